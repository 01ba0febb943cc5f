"""The Vercel AI SDK's chat routes: a run as a UI message stream (``gateway.protocols.ai_sdk``).

``useChat`` with ``new DefaultChatTransport({api: "<gateway>/api/ai-sdk/chat"})`` talks to them:

- ``POST /api/ai-sdk/chat`` ``{id, messages, …}``: the chat ID is the conversation; the last
  user message starts a run as ``POST /api/messages`` does (``Idempotency-Key`` honoured), and
  the answer is that run's stream;
- ``GET /api/ai-sdk/chat/{chat}/stream`` (the transport's reconnect): the conversation's latest
  run, replayed from its first event (the AI SDK resets the message it shows on the replay's
  ``start``); 204 when the conversation has no run or its latest run has ended, as the AI SDK's
  resumable streams answer once a stream has finished (the page then shows the stored answer,
  or reads it with ``GET /api/runs/{id}/ui-stream``);
- ``GET /api/runs/{run}/ui-stream``: any run's UI message stream from its first event, ended
  or not, authorised like ``GET /api/stream/{run}`` (``?token=`` or the org's credentials).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from agentstream.runtime import conversation_index
from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import BadRequest
from gateway.front_routes import RawRoute
from gateway.protocols.ai_sdk import DONE, HEADERS, UiChatRequest, UiMessageStream, prompt_of
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
from schemas import ID_PATTERN, TERMINAL_EVENT_TYPES, is_valid_id

CHAT_PATH = "/api/ai-sdk/chat"


def framing(run: str) -> Translated:
    """A run's stream as the AI SDK's UI message stream."""
    return Translated(run, UiMessageStream(run), headers=HEADERS, end=DONE)


async def _chat(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        principal = await caller(scope, gw)
        request = await read_json(scope, receive, gw, UiChatRequest)
        try:
            prompt = prompt_of(request.messages)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        org = org_of(scope, principal, request.org)
        body = message_body(prompt, request.id, org=org, connection_id=request.connection_id)
        # The slot first: a caller over its streams is refused before a run starts for it.
        release = gw.stream_slots.acquire(principal.key)
        try:
            accepted = await start_run(scope, gw, principal, body, route=CHAT_PATH)
        except BaseException:
            release()
            raise
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    await serve_from_start(
        receive, send, gw, accepted.org, accepted.run, release, framing(accepted.run)
    )


async def _reconnect(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        chat = scope["path_params"]["chat"]
        if not is_valid_id(chat):
            raise BadRequest(f"path.chat: String should match pattern '{ID_PATTERN}'")
        principal = await caller(scope, gw)
        org = org_of(scope, principal)
        run = await conversation_index.latest_run(gw.nc, org, chat)
        if run is None or await _ended(gw, org, run):
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        release = gw.stream_slots.acquire(principal.key)
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    await serve_from_start(receive, send, gw, org, run, release, framing(run))


async def _ended(gw: GatewayState, org: str, run: str) -> bool:
    """Whether ``run`` has ended: its terminal event is stored, or its events have expired."""
    last = await gw.history.last_event(org, run)
    return last is None or last.type in TERMINAL_EVENT_TYPES


async def _run_stream(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        run, opened, release = await stream.begin(scope, gw, scope["path_params"], from_start=True)
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    await stream.serve_opened(receive, send, gw, run, opened, release, framing(run))


ROUTES = [
    RawRoute(
        "POST",
        CHAT_PATH,
        CHAT_PATH,
        # Served ahead of the app's middleware: a body refused unread is drained here, as there.
        CloseUnreadBodyMiddleware(_chat),
        operation(
            "AI SDK Chat",
            "Start a run for the chat's last user message (the chat ID is the conversation) "
            "and stream it as an AI SDK UI message stream (x-vercel-ai-ui-message-stream: v1).",
            "ai_sdk_chat",
            [],
            {
                200: "The run's UI message stream",
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                409: "Conflict",
                413: "Too large",
                429: "Too many requests",
                503: "Unavailable, retry",
            },
            body=UiChatRequest,
        ),
    ),
    RawRoute(
        "GET",
        f"{CHAT_PATH}/{{chat}}/stream",
        rf"{CHAT_PATH}/(?P<chat>[^/]+)/stream",
        _reconnect,
        operation(
            "AI SDK Chat Reconnect",
            "The chat's latest run replayed from its start while it runs; 204 once it ended.",
            "ai_sdk_chat_reconnect",
            [path_parameter("chat", "Chat ID (the conversation ID)")],
            {
                200: "The latest run's UI message stream",
                204: "No run of the chat is going",
                400: "Bad request",
                401: "Unauthorized",
                429: "Too many requests",
            },
        ),
    ),
    RawRoute(
        "GET",
        "/api/runs/{run}/ui-stream",
        r"/api/runs/(?P<run>[^/]+)/ui-stream",
        _run_stream,
        operation(
            "Run UI Message Stream",
            "The run from its first event as an AI SDK UI message stream.",
            "run_ui_message_stream",
            [path_parameter("run", "Run ID (the Temporal workflow ID)"), TOKEN_PARAMETER],
            {
                200: "The run's UI message stream",
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not found",
                429: "Too many requests",
            },
        ),
    ),
]
