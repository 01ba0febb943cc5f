"""The AG-UI routes: a run as AG-UI events over SSE (``gateway.protocols.ag_ui``).

- ``POST /api/ag-ui`` with a ``RunAgentInput`` (what ``HttpAgent`` posts): the thread is the
  conversation, the last user message starts a run as ``POST /api/messages`` does, with the
  input's ``runId`` as its ``Idempotency-Key`` (a retried post gets the same run, replayed from
  its start), and the answer is that run's events;
- ``GET /api/runs/{run}/ag-ui``: any run's events from its first, authorised like
  ``GET /api/stream/{run}``; the thread and run IDs are then the agentstream run's own.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import BadRequest
from gateway.front_routes import RawRoute
from gateway.protocols.ag_ui import AgUiStream, RunAgentInput, prompt_of
from gateway.raw_asgi import send_error
from gateway.routes import stream
from gateway.routes.translated_stream import (
    TOKEN_PARAMETER,
    Translated,
    caller,
    message_body,
    operation,
    org_of,
    path_parameter,
    read_json,
    serve_from_start,
    start_run,
)
from gateway.state import GatewayState

RUN_PATH = "/api/ag-ui"


async def _run_agent(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        principal = await caller(scope, gw)
        request = await read_json(scope, receive, gw, RunAgentInput)
        try:
            prompt = prompt_of(request.messages)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        forwarded = request.forwardedProps
        named = forwarded.get("org")
        org = org_of(scope, principal, named if isinstance(named, str) else None)
        body = message_body(
            prompt, request.threadId, org=org, connection_id=forwarded.get("connection_id")
        )
        # The slot first: a caller over its streams is refused before a run starts for it.
        release = gw.stream_slots.acquire(principal.key)
        try:
            accepted = await start_run(
                scope, gw, principal, body, route=RUN_PATH, idempotency_key=request.runId
            )
        except BaseException:
            release()
            raise
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    translator = AgUiStream(
        request.threadId, request.runId, accepted.run, input_messages=request.messages
    )
    framing = Translated(accepted.run, translator)
    await serve_from_start(receive, send, gw, accepted.org, accepted.run, release, framing)


async def _run_events(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        run, opened, release = await stream.begin(scope, gw, scope["path_params"], from_start=True)
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    framing = Translated(run, AgUiStream(run, run, run))
    await stream.serve_opened(receive, send, gw, run, opened, release, framing)


ROUTES = [
    RawRoute(
        "POST",
        RUN_PATH,
        RUN_PATH,
        # Served ahead of the app's middleware: a body refused unread is drained here, as there.
        CloseUnreadBodyMiddleware(_run_agent),
        operation(
            "AG-UI Run Agent",
            "Start a run for the input's last user message (threadId is the conversation, "
            "runId names the run like an Idempotency-Key) and stream it as AG-UI events.",
            "ag_ui_run_agent",
            [],
            {
                200: "The run's AG-UI events",
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                409: "Conflict",
                413: "Too large",
                429: "Too many requests",
                503: "Unavailable, retry",
            },
            body=RunAgentInput,
        ),
    ),
    RawRoute(
        "GET",
        "/api/runs/{run}/ag-ui",
        r"/api/runs/(?P<run>[^/]+)/ag-ui",
        _run_events,
        operation(
            "Run AG-UI Events",
            "The run from its first event as AG-UI events (thread and run ID: the run's).",
            "run_ag_ui_events",
            [path_parameter("run", "Run ID (the Temporal workflow ID)"), TOKEN_PARAMETER],
            {
                200: "The run's AG-UI events",
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not found",
                429: "Too many requests",
            },
        ),
    ),
]
