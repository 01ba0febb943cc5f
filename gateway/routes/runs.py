"""``GET /api/runs/{run}`` (status and result) and ``POST /api/runs/{run}/cancel``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response
from temporalio.service import RPCError, RPCStatusCode

from agentstream.http import NotFound, json_response
from gateway.params import RunIdPath
from gateway.state import State
from schemas import RunView

router = APIRouter()


@router.get("/api/runs/{run}", responses={200: {"description": "The run"}, 404: {}})
async def get_run(run: RunIdPath, gw: State) -> Response:
    """The run's status, and its result once stored."""
    view = await gw.directory.find(run)
    if view is None:
        raise NotFound(f"unknown run {run}")
    return json_response(view)


@router.post("/api/runs/{run}/cancel", status_code=202, responses={202: {}, 404: {}})
async def cancel_run(run: RunIdPath, gw: State) -> Response:
    """Ask Temporal to cancel the run; the stream ends with ``cancelled`` once it is."""
    try:
        await gw.temporal.get_workflow_handle(run).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"unknown run {run}") from None
        raise
    view = await gw.directory.find(run)
    return json_response(view or RunView(workflow_id=run, status="running"), 202)
