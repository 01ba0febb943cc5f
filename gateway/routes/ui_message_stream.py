"""The Vercel AI SDK's chat routes: a run as a UI message stream (``gateway.protocols.ai_sdk``).

``useChat`` with ``new DefaultChatTransport({api: "<gateway>/api/ai-sdk/chat"})`` talks to them:

- ``POST /api/ai-sdk/chat`` ``{id, messages, …}``: the chat ID is the conversation; the last
  user message starts a run as ``POST /api/messages`` does (``Idempotency-Key`` honoured), and
  the answer is that run's stream;
- ``GET /api/ai-sdk/chat/{chat}/stream`` (the transport's reconnect): the conversation's latest
  run, replayed from its first event (the AI SDK resets the message it shows on the replay's
  ``start``); 204 when the conversation has no run or its latest run has ended, as the AI SDK's
  resumable streams answer once a stream has finished (the page then shows the stored answer,
  or reads it with ``GET /api/runs/{id}/ui-stream``). Read as the conversation's stream is: a
  conversation token (``?token=``), the org's credentials, or anyone in open mode;
- ``GET /api/runs/{run}/ui-stream``: any run's UI message stream from its first event, ended
  or not, authorised like ``GET /api/stream/{run}`` (``?token=`` or the org's credentials).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from agentstream.runtime import conversation_index
from agentstream.runtime.http import NotFound
from gateway.front_routes import RawRoute
from gateway.protocols.ai_sdk import DONE, HEADERS, UiChatRequest, UiMessageStream, prompt_of
from gateway.raw_asgi import path_id, send_error
from gateway.routes import conversations
from gateway.routes.translated_stream import (
    ORG_PARAMETER,
    TOKEN_MAX_CHARS,
    TOKEN_PARAMETER,
    PostedRun,
    Translated,
    caller,
    operation,
    path_parameter,
    post_route,
    query_org,
    query_value,
    run_route,
    serve_from_start,
)
from gateway.state import GatewayState
from gateway.stream_tokens import verify_conversation_token
from schemas import TERMINAL_EVENT_TYPES

CHAT_PATH = "/api/ai-sdk/chat"


def framing(run: str) -> Translated:
    """A run's stream as the AI SDK's UI message stream."""
    return Translated(run, UiMessageStream(run), headers=HEADERS, end=DONE)


def _posted(request: UiChatRequest) -> PostedRun:
    """The run a chat request asks for: its last user message in the chat's conversation."""
    return PostedRun(prompt_of(request.messages), request.id, request.org, request.connection_id)


async def _reconnect(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        chat = path_id(scope, "chat")
        org, key = await _chat_reader(scope, gw, chat)
        run = None if org is None else await conversation_index.latest_run(gw.nc, org, chat)
        if org is None or run is None or await _ended(gw, org, run):
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        release = gw.stream_slots.acquire(key)
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    await serve_from_start(receive, send, gw, org, run, release, framing(run))


async def _chat_reader(scope: Scope, gw: GatewayState, chat: str) -> tuple[str | None, str]:
    """The chat's org as its reader may see it (None: no conversation of it to see) and the
    reader's stream-slot key: a conversation token (``?token=``), else the org's credentials
    (in open mode anyone, the org from ``?org=`` or else the conversation's own), as
    ``GET /api/conversations/{id}/stream`` admits its readers."""
    token = query_value(scope, "token", max_length=TOKEN_MAX_CHARS)
    if token is not None:
        return verify_conversation_token(gw, token, chat).org, f"conversation:{chat}"
    principal = await caller(scope, gw)
    try:
        org = await conversations.conversation_org(gw, principal, chat, query_org(scope))
    except NotFound:
        # Unknown, or another org's: nothing to resume either way, and nothing said about it.
        return None, principal.key
    return org, principal.key


async def _ended(gw: GatewayState, org: str, run: str) -> bool:
    """Whether ``run`` has ended: its terminal event is stored, or its events have expired."""
    last = await gw.history.last_event(org, run)
    return last is None or last.type in TERMINAL_EVENT_TYPES


ROUTES = [
    post_route(
        CHAT_PATH,
        UiChatRequest,
        _posted,
        lambda _request, run: framing(run),
        "AI SDK Chat",
        "Start a run for the chat's last user message (the chat ID is the conversation) "
        "and stream it as an AI SDK UI message stream (x-vercel-ai-ui-message-stream: v1).",
        "ai_sdk_chat",
        "The run's UI message stream",
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
            [
                path_parameter("chat", "Chat ID (the conversation ID)"),
                {
                    **TOKEN_PARAMETER,
                    "description": "Conversation token (GET /api/conversations/{id})",
                },
                {**ORG_PARAMETER, "description": "The chat's org, in open mode"},
            ],
            {
                200: "The latest run's UI message stream",
                204: "No run of the chat is going",
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                429: "Too many requests",
            },
        ),
    ),
    run_route(
        "ui-stream",
        framing,
        "Run UI Message Stream",
        "The run from its first event as an AI SDK UI message stream.",
        "run_ui_message_stream",
        "The run's UI message stream",
    ),
]
