"""``GET /api/stream/{run}``: the SSE stream of a run, resumable with ``Last-Event-ID``.

Served as raw ASGI ahead of FastAPI (``gateway.front_routes``): a stream lasts as long as its
client stays, and whatever its request passed through would stay with it. The checks are the
ones FastAPI made, in its order and with its error bodies: the parameters (every problem in one
400), then access, then the event ID, then the run.

Where a stream resumes is read here and nowhere else: ``_params`` takes the ``Last-Event-ID``
header, else ``?last_event_id=``, and ``_resume_after`` parses it once access is granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from agentstream.runtime.http import BadRequest, NotFound, Unauthorized
from agentstream.runtime.log_context import set_run_context
from gateway.auth import Principal, own_run
from gateway.front_routes import RawRoute
from gateway.loop_local import loop_local
from gateway.raw_asgi import header, send_error
from gateway.routes.stream_operation import stream_operation
from gateway.run_stream import stream_run
from gateway.sse_frames import Frame, message, opening
from gateway.sse_response import SseStream
from gateway.state import GatewayState
from gateway.stream_tokens import verify_stream_token
from gateway.terminal_guard import publish_missing_terminal
from schemas import ID_PATTERN, AgentResult, Done, InvalidIdError, RunView, encode, is_valid_id

log = logging.getLogger(__name__)

SSE_CLIENTS = "sse_clients"
SSE_CLIENTS_HELP = "SSE clients connected to this replica."

_TOKEN_MAX_CHARS = 2048

# How many openings may be at one step at once on a replica: looking the run up (Temporal,
# PostgreSQL; only for streams opened without a stream token) and reading the stream (NATS). A
# burst of openings (clients reconnecting after a replica died) would otherwise send every
# request at once: none would finish sooner, and each one in flight holds buffers that the
# process keeps afterwards (a Temporal describe: ~64 KB; 1,000 idle streams opened at once
# without a token: 29-31 KiB of resident memory each with 32 lookups at once, 23-24 with 8).
# Separate turns: a lookup that hangs holds up no read.
_LOOKUPS_AT_ONCE = 8
_READS_AT_ONCE = 32


class _Turns:
    """The turns of one event loop's openings."""

    def __init__(self) -> None:
        self.lookups = asyncio.Semaphore(_LOOKUPS_AT_ONCE)
        self.reads = asyncio.Semaphore(_READS_AT_ONCE)


_turns = loop_local(_Turns)


class _Params(NamedTuple):
    run: str
    # Unparsed: a bad one is refused only after the access check.
    last_event_id: str | None
    token: str | None


class Opened(NamedTuple):
    """Where an admitted stream starts, and of which org."""

    org: str
    after: int
    # The stored answer of a completed run whose events expired: the whole stream.
    stored: AgentResult | None


class Framing(Protocol):
    """Another form of a run's stream (a frontend protocol), in place of agentstream's own SSE."""

    # Response headers besides the usual ones.
    headers: tuple[tuple[bytes, bytes], ...]

    def opening(self) -> bytes:
        """The stream's first block."""

    def frames(self, batch: list[Frame]) -> list[Frame]:
        """The batch's frames in this form (the same merge keys, another ``wire``)."""

    def stored(self, result: AgentResult) -> bytes:
        """The whole stream of a completed run whose events expired."""


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        run, opened, release = await begin(scope, gw, scope["path_params"])
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    await serve_opened(receive, send, gw, run, opened, release)


async def serve_opened(
    receive: Receive,
    send: Send,
    gw: GatewayState,
    run: str,
    opened: Opened,
    release: Callable[[], None],
    framing: Framing | None = None,
) -> None:
    """Serve the admitted stream of ``run`` (in ``framing``'s form, if given) until it ends;
    ``release`` frees the caller's stream slot at the end."""
    # This request's own task: what it logs from here on is about the run (of every attempt).
    set_run_context(run, opened.org)
    await serve_counted(
        receive,
        send,
        gw,
        release,
        run,
        f"event {opened.after}",
        lambda: _prepare(gw, run, opened, framing),
    )


Prepared = tuple[SseStream, bytes, AsyncIterator[list[Frame]] | None]


async def serve_counted(
    receive: Receive,
    send: Send,
    gw: GatewayState,
    release: Callable[[], None],
    name: str,
    after: object,
    prepare: Callable[[], Prepared],
) -> None:
    """Serve the stream ``prepare`` makes (its response, opening and batches) until it ends,
    counted among the open SSE streams and logged as ``name``'s, opened ``after`` a position;
    ``release`` frees the caller's stream slot at the end."""
    log.info("SSE stream of %s opened after %s", name, after)
    gw.metrics.add(SSE_CLIENTS, SSE_CLIENTS_HELP, 1)
    try:
        sse, first, batches = prepare()
        await sse.serve(
            receive,
            send,
            first,
            batches,
            ping_s=gw.settings.sse_ping_s,
            send_timeout_s=gw.settings.sse_send_timeout_s,
        )
    finally:
        release()
        gw.metrics.add(SSE_CLIENTS, SSE_CLIENTS_HELP, -1)
        log.info("SSE stream of %s closed", name)


async def begin(
    scope: Scope, gw: GatewayState, path: dict[str, str], *, from_start: bool = False
) -> tuple[str, Opened, Callable[[], None]]:
    """The checks of a new stream: its run, where it starts, and the caller's stream slot
    (whose release is the caller's from then on). Nothing else of the request stays.

    ``from_start``: the stream starts at the run's first event, whatever event ID it names.
    """
    try:
        return await _begin(scope, gw, path, from_start)
    except InvalidIdError as exc:
        raise BadRequest(str(exc)) from None


async def _begin(
    scope: Scope, gw: GatewayState, path: dict[str, str], from_start: bool
) -> tuple[str, Opened, Callable[[], None]]:
    params = _params(scope, path)
    org, release = await _admit(scope, gw, params.run, params.token)
    try:
        last_event_id = None if from_start else params.last_event_id
        return params.run, await _open(gw, org, params.run, last_event_id), release
    except BaseException:
        release()
        raise


def _params(scope: Scope, path: dict[str, str]) -> _Params:
    # As Starlette reads them: the query as latin-1, its last value of a name; a header's first.
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    problems: list[str] = []
    run: str | None
    if "run" in path:
        where, run = "path.run", path["run"]
    else:
        where, run = "query.workflow_id", query.get("workflow_id")
    if run is None:
        problems.append(f"{where}: Field required")
    elif not is_valid_id(run):
        problems.append(f"{where}: String should match pattern '{ID_PATTERN}'")
    token = query.get("token")
    if token is not None and len(token) > _TOKEN_MAX_CHARS:
        problems.append(f"query.token: String should have at most {_TOKEN_MAX_CHARS} characters")
    if problems or run is None:
        raise BadRequest("; ".join(problems))
    last_event_id = header(scope, b"last-event-id") or query.get("last_event_id")
    return _Params(run, last_event_id, token)


async def _admit(
    scope: Scope, gw: GatewayState, run: str, token: str | None
) -> tuple[str | None, Callable[[], None]]:
    """Check the caller may read ``run``; its org when known, and one of its stream slots.

    A stream token for the run, or credentials of the run's org; in open mode, anyone.
    """
    org: str | None = None
    if token is not None:
        org = verify_stream_token(gw, token, run).org
        key = f"run:{run}"
    else:
        principal, key = await reader(scope, gw, "a stream token (?token=)")
        if principal is not None:
            org = (await own_run(principal, run, functools.partial(_find, gw))).org
    return org, gw.stream_slots.acquire(key)


async def reader(scope: Scope, gw: GatewayState, token: str) -> tuple[Principal | None, str]:
    """A stream's reader without a token: its credentials (None in open mode without any),
    within its request rate, and its stream-slot key (its client address when anonymous).
    401 outside open mode without credentials, saying ``token`` "or an API key is required"."""
    request = Request(scope)
    principal = await gw.auth.optional_principal(request)
    if principal is None:
        if not gw.auth.open:
            raise Unauthorized(f"{token} or an API key is required")
        return None, f"ip:{request.client.host if request.client else 'unknown'}"
    gw.rate_limiter.check(principal.key)
    return principal, principal.key


def _resume_after(raw: str | None) -> int:
    """The event ID a stream resumes after (0: from the start), from ``_params``' last event
    ID; 400 for anything but an event ID."""
    if raw is None or raw == "":
        return 0
    # isascii: str.isdigit also accepts non-ASCII digits (superscripts, Arabic-Indic), which
    # int() refuses or reads as other numbers.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise BadRequest("Last-Event-ID must be a non-negative integer event ID")
    return int(raw)


async def _open(gw: GatewayState, org: str | None, run: str, raw_last_id: str | None) -> Opened:
    """Where the stream starts, and of which org; 404 for a run nothing knows."""
    after = _resume_after(raw_last_id)
    view = None
    if org is None:
        # Open mode: the org is the run's own (Temporal, the database), else the one its
        # first event names. Reads are then exact: another org's events under the same run
        # ID are never merged in.
        view = await _find(gw, run)
        if view is not None:
            org = view.org
        else:
            async with _turns().reads:
                org = await gw.history.first_org(run)
        if org is None:
            raise NotFound(f"unknown run {run}")
    async with _turns().reads:
        found = await gw.history.has_events(org, run)
    if found:
        return Opened(org, after, None)
    view = view or await _find(gw, run)
    if view is None:
        raise NotFound(f"unknown run {run}")
    if view.result is not None and view.status == "completed":
        # The run's events expired: its stored answer still ends the stream properly.
        return Opened(org, after, view.result)
    return Opened(org, after, None)


async def _find(gw: GatewayState, run: str) -> RunView | None:
    """The run as Temporal and the database know it."""
    async with _turns().lookups:
        return await gw.directory.find(run)


def _prepare(gw: GatewayState, run: str, opened: Opened, framing: Framing | None) -> Prepared:
    """The stream's response, its opening, and its batches of ready frames (keepalives in
    between are the response's)."""
    settings = gw.settings
    sse = SseStream(
        run,
        shutdown_grace_s=settings.sse_shutdown_grace_s,
        headers=framing.headers if framing is not None else (),
    )
    if opened.stored is not None:
        if framing is not None:
            return sse, framing.stored(opened.stored), None
        return sse, message("done", encode(Done(run=run, result=opened.stored))), None
    batches = stream_run(
        gw.hub,
        gw.history,
        opened.org,
        run,
        after=opened.after,
        idle_check_s=settings.sse_idle_check_s,
        # Twice a ping interval: a ping is never much later than due.
        tick_s=settings.sse_ping_s / 2,
        on_cut=sse.too_slow,
        on_idle=TerminalCheck(gw, opened.org, run),
    )
    if framing is not None:
        return sse, framing.opening(), _framed(batches, framing)
    return sse, opening(f"run {run}", settings.sse_retry_ms), batches


async def _framed(
    batches: AsyncGenerator[list[Frame], None], framing: Framing
) -> AsyncGenerator[list[Frame], None]:
    async with contextlib.aclosing(batches) as source:
        async for batch in source:
            yield framing.frames(batch) if batch else batch


class TerminalCheck:
    """What a quiet stream does: ask whether its run closed without a terminal event.

    The first quiet spell already asks: a run that closed without one (timed out, terminated)
    then ends its streams in seconds; later checks are spaced out.
    """

    __slots__ = ("_due", "_gw", "_org", "_run")

    def __init__(self, gw: GatewayState, org: str, run: str) -> None:
        self._gw = gw
        self._org = org
        self._run = run
        self._due = asyncio.get_running_loop().time()

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._due:
            return
        gw = self._gw
        self._due = loop.time() + gw.settings.sse_terminal_check_s
        # A lookup like the openings' (Temporal, then the stream): streams opened together fall
        # quiet together.
        async with _turns().lookups:
            await publish_missing_terminal(
                gw.temporal,
                gw.nc,
                gw.history,
                gw.store,
                self._run,
                org=self._org,
                start_grace_s=gw.settings.start_grace_s,
            )


def _operation(summary: str, description: str, operation_id: str, run: dict[str, Any]) -> Any:
    """The OpenAPI operation FastAPI published for these routes."""
    optional = [{"type": "string"}, {"type": "null"}]
    parameters = [
        {**run, "required": True, "description": "Run ID (the Temporal workflow ID)"},
        {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "schema": {
                "anyOf": optional,
                "description": "Resume after this event ID",
                "title": "Last Event Id",
            },
            "description": "Resume after this event ID",
        },
        {
            "name": "token",
            "in": "query",
            "required": False,
            "schema": {
                "anyOf": [{"type": "string", "maxLength": _TOKEN_MAX_CHARS}, {"type": "null"}],
                "description": "Stream token from POST /api/messages",
                "title": "Token",
            },
            "description": "Stream token from POST /api/messages",
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"anyOf": optional, "title": "Last-Event-Id"},
        },
    ]
    refusals = ("Bad Request", "Unauthorized", "Forbidden", "Not Found", "Too Many Requests")
    answers: dict[str, Any] = {
        **{
            str(status): {"description": text}
            for status, text in zip((400, 401, 403, 404, 429), refusals, strict=True)
        },
        "422": {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        },
    }
    return stream_operation(
        summary, description, operation_id, parameters, "Successful Response", answers
    )


def _run_parameter(name: str, where: str, title: str) -> dict[str, Any]:
    schema = {
        "type": "string",
        "pattern": ID_PATTERN,
        "description": "Run ID (the Temporal workflow ID)",
        "title": title,
    }
    return {"name": name, "in": where, "schema": schema}


ROUTES = [
    RawRoute(
        "GET",
        "/api/stream/{run}",
        r"/api/stream/(?P<run>[^/]+)",
        _serve,
        _operation(
            "Stream By Path",
            "Stream every event of ``run`` after ``Last-Event-ID`` (from the start without one).",
            "stream_by_path_api_stream__run__get",
            _run_parameter("run", "path", "Run"),
        ),
    ),
    RawRoute(
        "GET",
        "/api/stream",
        r"/api/stream",
        _serve,
        _operation(
            "Stream By Query",
            "The same stream, addressed as ``?workflow_id=``.",
            "stream_by_query_api_stream_get",
            _run_parameter("workflow_id", "query", "Workflow Id"),
        ),
    ),
]
