"""``GET /api/runs/{run}`` (status and result) and ``POST /api/runs/{run}/cancel``."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter
from starlette.responses import Response

from agentstream.runtime.http import NotFound, json_response
from agentstream.runtime.temporal import request_cancel
from gateway.auth import own_run
from gateway.params import RunIdPath
from gateway.state import Caller, State
from gateway.stream_tokens import stream_access
from schemas import RunView

router = APIRouter()


_ERRORS: dict[int | str, dict[str, object]] = {400: {}, 401: {}, 403: {}, 404: {}, 429: {}}


@router.get("/api/runs/{run}", responses={200: {"description": "The run"}, **_ERRORS})
async def get_run(run: RunIdPath, gw: State, principal: Caller) -> Response:
    """The run's status, its result once stored, and its trace ID if it was traced."""
    view = await own_run(principal, run, gw.directory.find)
    trace_id = await gw.history.trace_id(view.org, run)
    return json_response(msgspec.structs.replace(view, trace_id=trace_id) if trace_id else view)


@router.post(
    "/api/runs/{run}/stream-token",
    responses={200: {"description": "A stream token for the run"}, **_ERRORS},
)
async def stream_token(run: RunIdPath, gw: State, principal: Caller) -> Response:
    """A fresh stream token, e.g. for a run started through Temporal directly."""
    view = await own_run(principal, run, gw.directory.find)
    access = stream_access(gw, run, view.org)
    return json_response({"stream_token": access.token, "stream_url": access.url})


@router.post("/api/runs/{run}/cancel", status_code=202, responses={202: {}, **_ERRORS})
async def cancel_run(run: RunIdPath, gw: State, principal: Caller) -> Response:
    """Ask Temporal to cancel the run; the stream ends with ``cancelled`` once it is."""
    await own_run(principal, run, gw.directory.find)
    if not await request_cancel(gw.temporal, run):
        raise NotFound(f"unknown run {run}")
    view = await gw.directory.find(run)
    return json_response(view or RunView(workflow_id=run, status="running"), 202)
