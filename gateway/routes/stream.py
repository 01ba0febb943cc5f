"""``GET /api/stream/{run}``: the SSE stream of a run, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.background import BackgroundTask

from agentstream.http import BadRequest, NotFound, Unauthorized
from gateway.auth import require_org
from gateway.params import RunIdPath, RunIdQuery
from gateway.run_stream import ClientTooSlow, stream_run
from gateway.sse_frames import PING, message, opening
from gateway.sse_response import ChunkSource, SseResponse
from gateway.state import GatewayState, State
from gateway.stream_tokens import verify_stream_token
from gateway.terminal_guard import publish_missing_terminal
from schemas import AgentResult, Done, encode

log = logging.getLogger(__name__)
router = APIRouter()

SSE_CLIENTS = "sse_clients"
SSE_CLIENTS_HELP = "SSE clients connected to this replica."

LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventIdQuery = Annotated[str | None, Query(description="Resume after this event ID")]


TokenQuery = Annotated[
    str | None, Query(description="Stream token from POST /api/messages", max_length=2048)
]
_ERRORS: dict[int | str, dict[str, object]] = {400: {}, 401: {}, 403: {}, 404: {}, 429: {}}


@router.get("/api/stream/{run}", response_class=SseResponse, status_code=200, responses=_ERRORS)
async def stream_by_path(
    run: RunIdPath,
    request: Request,
    gw: State,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    token: TokenQuery = None,
) -> SseResponse:
    """Stream every event of ``run`` after ``Last-Event-ID`` (from the start without one)."""
    org, release = await _admit(request, gw, run, token)
    return await _open_stream(gw, org, run, last_event_id_header or last_event_id, release)


@router.get("/api/stream", response_class=SseResponse, status_code=200, responses=_ERRORS)
async def stream_by_query(
    workflow_id: RunIdQuery,
    request: Request,
    gw: State,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    token: TokenQuery = None,
) -> SseResponse:
    """The same stream, addressed as ``?workflow_id=``."""
    org, release = await _admit(request, gw, workflow_id, token)
    last = last_event_id_header or last_event_id
    return await _open_stream(gw, org, workflow_id, last, release)


async def _admit(
    request: Request, gw: GatewayState, run: str, token: str | None
) -> tuple[str | None, Callable[[], None]]:
    """Check the caller may read ``run``; its org when known, and one of its stream slots.

    A stream token for the run, or credentials of the run's org; in open mode, anyone.
    """
    org: str | None = None
    if token is not None:
        org = verify_stream_token(gw, token, run).org
        key = f"run:{run}"
    else:
        principal = await gw.auth.optional_principal(request)
        if principal is None and not gw.auth.open:
            raise Unauthorized("a stream token (?token=) or an API key is required")
        if principal is not None:
            gw.rate_limiter.check(principal.key)
            view = await gw.directory.find(run)
            if view is None:
                raise NotFound(f"unknown run {run}")
            require_org(principal, view.org)
            org = view.org
            key = principal.key
        else:
            key = f"ip:{request.client.host if request.client else 'unknown'}"
    return org, gw.stream_slots.acquire(key)


def _parse_last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    # isascii: str.isdigit also accepts non-ASCII digits (superscripts, Arabic-Indic), which
    # int() refuses or reads as other numbers.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise BadRequest("Last-Event-ID must be a non-negative integer event ID")
    return int(raw)


async def _open_stream(
    gw: GatewayState,
    org: str | None,
    run: str,
    raw_last_id: str | None,
    release: Callable[[], None],
) -> SseResponse:
    try:
        after = _parse_last_event_id(raw_last_id)
        view = None
        if org is None:
            # Open mode: the org is the run's own (Temporal, the database), else the one its
            # first event names. Reads are then exact: another org's events under the same run
            # ID are never merged in.
            view = await gw.directory.find(run)
            org = view.org if view is not None else await gw.history.first_org(run)
            if org is None:
                raise NotFound(f"unknown run {run}")
        if await gw.history.has_events(org, run):
            source = _live_source(gw, org, run, after)
        else:
            view = view or await gw.directory.find(run)
            if view is None:
                raise NotFound(f"unknown run {run}")
            if view.result is not None and view.status == "completed":
                # The run's events expired: its stored answer still ends the stream properly.
                source = _stored_done(run, view.result)
            else:
                source = _live_source(gw, org, run, after)
    except BaseException:
        release()
        raise
    gw.metrics.add(SSE_CLIENTS, SSE_CLIENTS_HELP, 1)

    async def closed() -> None:
        release()
        gw.metrics.add(SSE_CLIENTS, SSE_CLIENTS_HELP, -1)

    settings = gw.settings
    return SseResponse(
        source,
        send_timeout_s=settings.sse_send_timeout_s,
        shutdown_grace_s=settings.sse_shutdown_grace_s,
        # Runs once the response ended, however it ended.
        background=BackgroundTask(closed),
    )


def _live_source(gw: GatewayState, org: str, run: str, after: int) -> ChunkSource:
    def source(cut: Callable[[], None]) -> AsyncGenerator[bytes]:
        return _live_chunks(gw, org, run, after, cut)

    return source


async def _live_chunks(
    gw: GatewayState, org: str, run: str, after: int, cut: Callable[[], None]
) -> AsyncGenerator[bytes]:
    """The stream's opening, then each batch of ready frames as one chunk, and keepalives."""
    settings = gw.settings
    loop = asyncio.get_running_loop()
    # The first quiet spell already asks: a run that closed without a terminal event (timed
    # out, terminated) then ends its streams in seconds, later checks are spaced out.
    next_check = loop.time()

    async def on_idle() -> None:
        nonlocal next_check
        if loop.time() >= next_check:
            next_check = loop.time() + settings.sse_terminal_check_s
            await publish_missing_terminal(gw.temporal, gw.nc, gw.history, gw.store, run)

    def too_slow() -> None:
        log.info("client of %s too slow, disconnected to resume", run)
        cut()

    yield opening(f"run {run}", settings.sse_retry_ms)
    sent_at = loop.time()
    try:
        async for batch in stream_run(
            gw.hub,
            gw.history,
            org,
            run,
            after=after,
            idle_check_s=settings.sse_idle_check_s,
            # Twice a ping interval: a ping is never much later than due.
            tick_s=settings.sse_ping_s / 2,
            on_cut=too_slow,
            on_idle=on_idle,
        ):
            if batch:
                # Frames were encoded once for every client: here they are only joined.
                yield b"".join([frame.wire for frame in batch])
            elif loop.time() - sent_at < settings.sse_ping_s:
                continue
            else:
                yield PING
            sent_at = loop.time()
    except ClientTooSlow:
        pass


def _stored_done(run: str, result: AgentResult) -> ChunkSource:
    async def chunks() -> AsyncGenerator[bytes]:
        yield message("done", encode(Done(run=run, result=result)))

    return lambda cut: chunks()
