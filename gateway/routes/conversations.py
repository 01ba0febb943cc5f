"""Conversations: ``GET /api/conversations/{id}`` (its turns), its stream
``GET /api/conversations/{id}/stream`` (every run of it, resumable), a fresh stream token, and
``GET /api/runs?conversation_id=`` (its most recent runs).

A conversation is read as its org's only (``gateway.conversation_gate``): with credentials, the
caller's org's; with a conversation token, the token's; in open mode, ``?org=`` or else the org
that stored it. Another org's conversation, or one nothing knows, is a 404.

Turns come from PostgreSQL (stored answers, kept for good) and from the conversation's index
(``agentstream.runtime.conversation_index``: runs still going, failed or cancelled, within the
stream's max age), merged by run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agentstream.runtime import conversation_index
from agentstream.runtime.http import BadRequest, NotFound, json_response
from agentstream.runtime.message_store import StoredTurn
from gateway.auth import Principal, require_org
from gateway.conversation_stream import parse_position, stream_conversation
from gateway.front_routes import RawRoute
from gateway.raw_asgi import header, send_error
from gateway.routes import stream
from gateway.routes.stream import TerminalCheck
from gateway.routes.stream_operation import stream_operation
from gateway.sse_frames import opening
from gateway.sse_response import SseStream
from gateway.state import Caller, GatewayState, State
from gateway.stream_tokens import conversation_access, verify_conversation_token
from schemas import (
    DEFAULT_ORG,
    ID_PATTERN,
    ConversationTurn,
    ConversationView,
    InvalidIdError,
    RunList,
    TurnState,
    is_valid_id,
)

log = logging.getLogger(__name__)
router = APIRouter()

# Turns one answer lists at most.
MAX_TURNS = 200
# How many runs' ends are looked up at once for a listing.
_LOOKUPS_AT_ONCE = 16
_TOKEN_MAX_CHARS = 2048

ConversationIdPath = Annotated[
    str, Path(pattern=ID_PATTERN, max_length=64, description="Conversation ID")
]
OrgQuery = Annotated[
    str | None,
    Query(
        pattern=ID_PATTERN,
        max_length=64,
        description="The conversation's org, in open mode (with credentials: the caller's)",
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_TURNS, description="How many, newest first")]

_ERRORS: dict[int | str, dict[str, object]] = {400: {}, 401: {}, 403: {}, 404: {}, 429: {}}
_STATES: dict[str, TurnState] = {"done": "completed", "failed": "failed", "cancelled": "cancelled"}


async def conversation_org(
    gw: GatewayState, principal: Principal | None, conversation: str, org: str | None
) -> str:
    """The org whose ``conversation`` the caller reads: 404 if it is another org's or unknown,
    403 for credentials naming another org."""
    if principal is not None and principal.org is not None:
        if org is not None:
            require_org(principal, org)
        org = principal.org
    owner = await gw.store.conversation_org(conversation)
    org = org or owner or DEFAULT_ORG
    if owner is not None and owner != org:
        raise NotFound(f"unknown conversation {conversation}")
    if owner is None and await conversation_index.latest(gw.nc, org, conversation) is None:
        raise NotFound(f"unknown conversation {conversation}")
    return org


@router.get(
    "/api/conversations/{conversation}",
    responses={200: {"description": "The conversation's turns, oldest first"}, **_ERRORS},
)
async def get_conversation(
    conversation: ConversationIdPath,
    gw: State,
    principal: Caller,
    org: OrgQuery = None,
    limit: LimitQuery = 50,
) -> Response:
    """The conversation's newest ``limit`` turns (question, status, answer and SQL once
    stored), oldest first, and its stream URL with a conversation token."""
    owner = await conversation_org(gw, principal, conversation, org)
    turns = await _turns(gw, owner, conversation, limit)
    access = conversation_access(gw, conversation, owner)
    view = ConversationView(
        conversation_id=conversation,
        org=owner,
        turns=turns,
        stream_url=access.url,
        stream_token=access.token,
    )
    return json_response(view)


@router.post(
    "/api/conversations/{conversation}/stream-token",
    responses={200: {"description": "A token for the conversation's stream"}, **_ERRORS},
)
async def conversation_stream_token(
    conversation: ConversationIdPath, gw: State, principal: Caller, org: OrgQuery = None
) -> Response:
    """A fresh conversation token and the stream URL carrying it."""
    owner = await conversation_org(gw, principal, conversation, org)
    access = conversation_access(gw, conversation, owner)
    return json_response({"stream_token": access.token, "stream_url": access.url})


@router.get(
    "/api/runs",
    responses={200: {"description": "The conversation's most recent runs"}, **_ERRORS},
)
async def list_runs(
    gw: State,
    principal: Caller,
    conversation_id: Annotated[
        str, Query(pattern=ID_PATTERN, max_length=64, description="Conversation ID")
    ],
    org: OrgQuery = None,
    limit: LimitQuery = 20,
) -> Response:
    """The conversation's ``limit`` most recent runs, newest first, with their status."""
    owner = await conversation_org(gw, principal, conversation_id, org)
    turns = await _turns(gw, owner, conversation_id, limit)
    return json_response(RunList(conversation_id=conversation_id, runs=turns[::-1]))


async def _turns(
    gw: GatewayState, org: str, conversation: str, limit: int
) -> list[ConversationTurn]:
    """The newest ``limit`` turns, oldest first: stored ones and those the index holds."""
    stored, indexed = await asyncio.gather(
        gw.store.turns(conversation, org, limit=limit),
        conversation_index.runs_of(gw.nc, org, conversation, limit=limit),
    )
    # A run the index holds is dated by its acceptance, which orders the conversation; one
    # past the stream's max age by when its answer was stored.
    accepted = {t.run: t.ts / 1e9 for t in indexed}
    listed = {t.run_id: _stored_turn(t, accepted.get(t.run_id, t.stored_at)) for t in stored}
    pending = [t for t in indexed if t.run not in listed]
    lookups = asyncio.Semaphore(_LOOKUPS_AT_ONCE)

    async def state_of(run: str) -> TurnState:
        async with lookups:
            last = await gw.history.last_event(org, run)
        return _STATES.get(last.type, "running") if last is not None else "running"

    states = await asyncio.gather(*(state_of(t.run) for t in pending))
    for indexed_run, state in zip(pending, states, strict=True):
        listed[indexed_run.run] = ConversationTurn(
            run_id=indexed_run.run,
            prompt=indexed_run.prompt,
            status=state,
            ts=accepted[indexed_run.run],
        )
    return sorted(listed.values(), key=lambda t: (t.ts, t.run_id))[-limit:]


def _stored_turn(stored: StoredTurn, ts: float) -> ConversationTurn:
    return ConversationTurn(
        run_id=stored.run_id,
        prompt=stored.turn.prompt,
        status="completed",
        answer=stored.turn.answer,
        sql=stored.turn.sql,
        ts=ts,
    )


# --- The stream --------------------------------------------------------------------------------


async def _serve_stream(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        conversation, org, after_raw, release = await _admit(scope, gw)
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    try:
        after = parse_position(after_raw)
    except Exception as exc:
        release()
        await send_error(send, scope, exc)
        return
    name = f"conversation {conversation}"

    def prepare() -> stream.Prepared:
        settings = gw.settings
        sse = SseStream(name, shutdown_grace_s=settings.sse_shutdown_grace_s)
        batches = stream_conversation(
            gw,
            org,
            conversation,
            after=after,
            # Twice a ping interval: a ping is never much later than due.
            tick_s=settings.sse_ping_s / 2,
            on_cut=sse.too_slow,
            on_run_idle=lambda run: TerminalCheck(gw, org, run),
        )
        return sse, opening(name, settings.sse_retry_ms), batches

    await stream.serve_counted(receive, send, gw, release, name, after, prepare)


async def _admit(scope: Scope, gw: GatewayState) -> tuple[str, str, str | None, Callable[[], None]]:
    """The conversation, its org, the unparsed ``Last-Event-ID`` and the caller's stream slot's
    release, once the caller may read it: checked as a run's stream is (a token, or the org's
    credentials; in open mode, anyone)."""
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    conversation = scope["path_params"]["conversation"]
    problems: list[str] = []
    if not is_valid_id(conversation):
        problems.append(f"path.conversation: String should match pattern '{ID_PATTERN}'")
    token = query.get("token")
    if token is not None and len(token) > _TOKEN_MAX_CHARS:
        problems.append(f"query.token: String should have at most {_TOKEN_MAX_CHARS} characters")
    org = query.get("org")
    if org is not None and not is_valid_id(org):
        problems.append(f"query.org: String should match pattern '{ID_PATTERN}'")
    if problems:
        raise BadRequest("; ".join(problems))
    if token is not None:
        owner = verify_conversation_token(gw, token, conversation).org
        key = f"conversation:{conversation}"
    else:
        principal, key = await stream.reader(scope, gw, "a conversation token (?token=)")
        try:
            owner = await conversation_org(gw, principal, conversation, org)
        except InvalidIdError as exc:
            raise BadRequest(str(exc)) from None
    last_event_id = header(scope, b"last-event-id") or query.get("last_event_id")
    return conversation, owner, last_event_id, gw.stream_slots.acquire(key)


def _operation() -> dict[str, Any]:
    """The stream's OpenAPI operation (it is served ahead of FastAPI)."""

    def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"anyOf": [schema, {"type": "null"}], "description": description},
            "description": description,
        }

    identifier = {"type": "string", "pattern": ID_PATTERN, "maxLength": 64}
    parameters = [
        {
            "name": "conversation",
            "in": "path",
            "required": True,
            "schema": {**identifier, "description": "Conversation ID"},
            "description": "Conversation ID",
        },
        query(
            "last_event_id",
            "Resume after this conversation event ID (<record>-<event>)",
            {"type": "string"},
        ),
        query(
            "token",
            "Conversation token (POST /api/messages, GET /api/conversations/{id})",
            {"type": "string", "maxLength": _TOKEN_MAX_CHARS},
        ),
        query("org", "The conversation's org, in open mode", identifier),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    ]
    refusals = {
        "400": "Bad Request",
        "401": "Unauthorized",
        "403": "Forbidden",
        "404": "Not Found",
        "429": "Too Many Requests",
    }
    return stream_operation(
        "Conversation Stream",
        "Every run of the conversation, in order, each run's events in turn; "
        "resumable with ``Last-Event-ID``.",
        "conversation_stream_api_conversations__conversation__stream_get",
        parameters,
        "Successful Response",
        {status: {"description": text} for status, text in refusals.items()},
    )


ROUTES = [
    RawRoute(
        "GET",
        "/api/conversations/{conversation}/stream",
        r"/api/conversations/(?P<conversation>[^/]+)/stream",
        _serve_stream,
        _operation(),
    )
]
