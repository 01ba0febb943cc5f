"""What the frontend-protocol routes share: a run's stream through a translator, and starting a
run from a protocol's request.

The stream is the run stream's own (``gateway.routes.stream``: history then live, merged by
event ID, every event once and in order, keepalives, slow-client cut-off); only each frame's
``wire`` changes, translated from the event it carries. A protocol stream always starts at the
run's first event: both protocols resume by replaying the whole run, and their translators need
its beginning (a text delta belongs to a text part opened before it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import BadRequest, decode_body
from gateway.auth import Principal, require_org
from gateway.front_routes import RawRoute
from gateway.protocols import Translator, sse_data
from gateway.raw_asgi import header, read_body, send_error
from gateway.routes import stream
from gateway.routes.messages import Accepted, accept_message
from gateway.routes.stream_operation import stream_operation
from gateway.sse_frames import Frame, frame_data
from gateway.state import GatewayState
from schemas import (
    DEFAULT_ORG,
    ID_PATTERN,
    AgentResult,
    Done,
    PostMessage,
    decode_event,
    is_valid_id,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_IDEMPOTENCY_KEY = b"idempotency-key"


class Translated:
    """A run's stream in a protocol's form (a ``stream.Framing``): each event's frame replaced
    by what ``translator`` makes of it; ``end`` follows the terminal event's."""

    def __init__(
        self,
        run: str,
        translator: Translator,
        *,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        end: bytes = b"",
    ) -> None:
        self.headers = headers
        self._run = run
        self._translator = translator
        self._end = end

    def opening(self) -> bytes:
        """The protocol's opening messages."""
        return sse_data(self._translator.start())

    def frames(self, batch: list[Frame]) -> list[Frame]:
        """The batch's frames translated; a frame that stands for nothing is left out."""
        translated: list[Frame] = []
        for frame in batch:
            try:
                event = decode_event(frame_data(frame))
            except (msgspec.DecodeError, ValueError):
                # An event type this replica does not know yet (a newer producer): skipped.
                log.warning("event %d of %s not translated: unreadable", frame.id, self._run)
                continue
            wire = sse_data(self._translator.translate(event))
            if frame.terminal:
                wire += self._end
            if wire:
                translated.append(frame._replace(wire=wire))
        return translated

    def stored(self, result: AgentResult) -> bytes:
        """A run whose events expired: its stored answer, as its only event."""
        done = self._translator.translate(Done(run=self._run, result=result))
        return self.opening() + sse_data(done) + self._end


async def caller(scope: Scope, gw: GatewayState) -> Principal:
    """The authenticated caller, within its request rate (``gateway.state.caller``'s checks)."""
    principal = await gw.auth.principal(Request(scope))
    if principal.org is not None:
        gw.rate_limiter.check(principal.key)
    return principal


def query_value(scope: Scope, name: str, *, max_length: int = 64) -> str | None:
    """The request's ``?name=`` (its last value, as Starlette reads it); 400 when too long."""
    value = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get(name)
    if value is not None and len(value) > max_length:
        raise BadRequest(f"query.{name}: String should have at most {max_length} characters")
    return value


def query_org(scope: Scope) -> str | None:
    """The org the request's ``?org=`` names (the AI SDK's reconnect has only its URL)."""
    named = query_value(scope, "org")
    if named is not None and not is_valid_id(named):
        raise BadRequest(f"query.org: String should match pattern '{ID_PATTERN}'")
    return named


def org_of(scope: Scope, principal: Principal, named: str | None = None) -> str:
    """The org a protocol request acts for: its credentials', else the one it names (``named``
    from its body, else ``?org=``), else the default. 400 for an invalid name, 403 for another
    org than the credentials'."""
    org = named or query_org(scope) or principal.org or DEFAULT_ORG
    require_org(principal, org)
    return org


async def read_json(scope: Scope, receive: Receive, gw: GatewayState, type_: type[T]) -> T:
    """The request's JSON body as ``type_``, within the gateway's body limit; 400 otherwise."""
    return decode_body(await read_body(scope, receive, gw.settings.max_body_bytes), type_)


def message_body(prompt: str, conversation: str, **extra: Any) -> PostMessage:
    """A ``POST /api/messages`` body, checked as that route checks it (400 when invalid)."""
    fields = {"message": prompt, "conversation_id": conversation, **extra}
    try:
        return msgspec.convert(
            {k: v for k, v in fields.items() if v is not None}, PostMessage, strict=True
        )
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid body: {exc}") from None


async def start_run(
    scope: Scope,
    gw: GatewayState,
    principal: Principal,
    body: PostMessage,
    *,
    route: str,
    idempotency_key: str | None = None,
) -> Accepted:
    """Start a run as ``POST /api/messages`` does; the key defaults to the request's
    ``Idempotency-Key`` header."""
    key = idempotency_key if idempotency_key is not None else header(scope, _IDEMPOTENCY_KEY)
    return await accept_message(Request(scope), gw, principal, body, key, route=route)


async def serve_from_start(
    receive: Receive,
    send: Send,
    gw: GatewayState,
    org: str,
    run: str,
    release: Callable[[], None],
    framing: Translated,
) -> None:
    """Stream ``org``'s ``run``, whose events exist, from its first event in ``framing``'s form;
    ``release`` frees the caller's stream slot at the end."""
    opened = stream.Opened(org, 0, None)
    await stream.serve_opened(receive, send, gw, run, opened, release, framing)


class PostedRun(NamedTuple):
    """What a protocol's post asks for: a run for ``prompt`` in ``conversation``."""

    prompt: str
    conversation: str
    # The org the body names (None: ``?org=``, the credentials' or the default).
    org: str | None
    connection_id: Any
    # None: the request's ``Idempotency-Key`` header.
    idempotency_key: str | None = None


async def serve_posted_run(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    route: str,
    body_type: type[T],
    read: Callable[[T], PostedRun],
    framing: Callable[[T, str], Translated],
) -> None:
    """Serve a protocol's post: start the run its body (a ``body_type``) asks for, as
    ``POST /api/messages`` does, and stream it from its start in ``framing(body, run)``'s form.
    ``read`` raises ValueError for a body that asks for no run (a 400)."""
    gw: GatewayState = scope["state"]["gateway"]
    try:
        principal = await caller(scope, gw)
        request = await read_json(scope, receive, gw, body_type)
        try:
            posted = read(request)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        org = org_of(scope, principal, posted.org)
        body = message_body(
            posted.prompt, posted.conversation, org=org, connection_id=posted.connection_id
        )
        # The slot first: a caller over its streams is refused before a run starts for it.
        release = gw.stream_slots.acquire(principal.key)
        try:
            accepted = await start_run(
                scope, gw, principal, body, route=route, idempotency_key=posted.idempotency_key
            )
        except BaseException:
            release()
            raise
    except Exception as exc:
        await send_error(send, scope, exc)
        return
    translated = framing(request, accepted.run)
    await serve_from_start(receive, send, gw, accepted.org, accepted.run, release, translated)


def post_route(
    path: str,
    body_type: type[T],
    read: Callable[[T], PostedRun],
    framing: Callable[[T, str], Translated],
    summary: str,
    description: str,
    operation_id: str,
    streamed: str,
) -> RawRoute:
    """The ``POST path`` route of a protocol, served by ``serve_posted_run``."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await serve_posted_run(
            scope, receive, send, route=path, body_type=body_type, read=read, framing=framing
        )

    return RawRoute(
        "POST",
        path,
        path,
        # Served ahead of the app's middleware: a body refused unread is drained here, as there.
        CloseUnreadBodyMiddleware(serve),
        operation(
            summary,
            description,
            operation_id,
            [],
            {
                200: streamed,
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                409: "Conflict",
                413: "Too large",
                429: "Too many requests",
                503: "Unavailable, retry",
            },
            body=body_type,
        ),
    )


def run_route(
    name: str,
    framing: Callable[[str], Translated],
    summary: str,
    description: str,
    operation_id: str,
    streamed: str,
) -> RawRoute:
    """``GET /api/runs/{run}/<name>``: any run from its first event in ``framing(run)``'s form,
    authorised like ``GET /api/stream/{run}``."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        gw: GatewayState = scope["state"]["gateway"]
        try:
            run, opened, release = await stream.begin(
                scope, gw, scope["path_params"], from_start=True
            )
        except Exception as exc:
            await send_error(send, scope, exc)
            return
        await stream.serve_opened(receive, send, gw, run, opened, release, framing(run))

    return RawRoute(
        "GET",
        f"/api/runs/{{run}}/{name}",
        rf"/api/runs/(?P<run>[^/]+)/{name}",
        serve,
        operation(
            summary,
            description,
            operation_id,
            [path_parameter("run", "Run ID (the Temporal workflow ID)"), TOKEN_PARAMETER],
            {
                200: streamed,
                400: "Bad request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not found",
                429: "Too many requests",
            },
        ),
    )


def path_parameter(name: str, description: str) -> dict[str, Any]:
    """An OpenAPI path parameter holding an ID."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }


ORG_PARAMETER: dict[str, Any] = {
    "name": "org",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": ID_PATTERN},
}
TOKEN_MAX_CHARS = 2048
# A run's stream token, as GET /api/stream/{run} takes it.
TOKEN_PARAMETER: dict[str, Any] = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "Stream token from POST /api/messages",
    "schema": {"type": "string", "maxLength": TOKEN_MAX_CHARS},
}


def operation(
    summary: str,
    description: str,
    operation_id: str,
    parameters: list[dict[str, Any]],
    answers: dict[int, str],
    *,
    body: Any = None,
) -> dict[str, Any]:
    """The OpenAPI operation of a protocol route: its 200 is an event stream."""
    refusals = {
        str(status): {"description": text} for status, text in answers.items() if status != 200
    }
    return stream_operation(
        summary, description, operation_id, parameters, answers[200], refusals, body=body
    )
