"""``GET /api/stream/{run}``: the SSE stream of a run, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from agentstream.http import BadRequest, NotFound
from gateway.params import RunIdPath, RunIdQuery
from gateway.run_stream import ClientTooSlow, stream_run
from gateway.sse_response import CuttableEventSourceResponse
from gateway.state import GatewayState, State
from gateway.terminal_guard import publish_missing_terminal
from schemas import AgentResult, Done, encode

log = logging.getLogger(__name__)
router = APIRouter()

LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventIdQuery = Annotated[str | None, Query(description="Resume after this event ID")]


@router.get("/api/stream/{run}", response_class=EventSourceResponse, responses={400: {}, 404: {}})
async def stream_by_path(
    run: RunIdPath,
    gw: State,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """Stream every event of ``run`` after ``Last-Event-ID`` (from the start without one)."""
    return await _open_stream(gw, run, last_event_id_header or last_event_id)


@router.get("/api/stream", response_class=EventSourceResponse, responses={400: {}, 404: {}})
async def stream_by_query(
    workflow_id: RunIdQuery,
    gw: State,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """The same stream, addressed as ``?workflow_id=``."""
    return await _open_stream(gw, workflow_id, last_event_id_header or last_event_id)


def _parse_last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 20:
        raise BadRequest("Last-Event-ID must be a non-negative integer event ID")
    return int(raw)


async def _open_stream(gw: GatewayState, run: str, raw_last_id: str | None) -> EventSourceResponse:
    after = _parse_last_event_id(raw_last_id)
    cut_off = asyncio.Event()
    if await gw.history.has_events(run):
        events = _live_events(gw, run, after, cut_off)
    else:
        view = await gw.directory.find(run)
        if view is None:
            raise NotFound(f"unknown run {run}")
        if view.result is not None and view.status == "completed":
            # The run's events have expired: its stored answer still ends the stream properly.
            events = _stored_done(run, view.result)
        else:
            events = _live_events(gw, run, after, cut_off)
    settings = gw.settings
    return CuttableEventSourceResponse(
        events,
        cut_off=cut_off,
        ping=settings.sse_ping_s,
        send_timeout=settings.sse_send_timeout_s,
        shutdown_grace_period=settings.sse_shutdown_grace_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _live_events(
    gw: GatewayState, run: str, after: int, cut_off: asyncio.Event
) -> AsyncIterator[ServerSentEvent]:
    settings = gw.settings
    loop = asyncio.get_running_loop()
    next_check = loop.time() + settings.sse_terminal_check_s

    async def on_idle() -> None:
        nonlocal next_check
        if loop.time() >= next_check:
            next_check = loop.time() + settings.sse_terminal_check_s
            await publish_missing_terminal(gw.temporal, gw.js, gw.store, run)

    yield ServerSentEvent(comment=f"run {run}", retry=settings.sse_retry_ms)
    try:
        async for event in stream_run(
            gw.hub,
            gw.history,
            run,
            after=after,
            idle_check_s=settings.sse_idle_check_s,
            cut_off=cut_off,
            on_idle=on_idle,
        ):
            yield ServerSentEvent(data=event.data.decode(), event=event.type, id=str(event.seq))
    except ClientTooSlow:
        log.info("client of %s too slow, disconnected to resume", run)


async def _stored_done(run: str, result: AgentResult) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(data=encode(Done(run=run, result=result)).decode(), event="done")
