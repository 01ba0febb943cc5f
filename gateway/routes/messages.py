"""``POST /api/messages``: start a run and answer at once with where to stream it."""

from __future__ import annotations

import logging
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Header, Request
from opentelemetry.trace import SpanKind
from starlette.responses import Response
from temporalio.exceptions import WorkflowAlreadyStartedError
from ulid import ULID

from agentstream.runtime import tracing
from agentstream.runtime.http import (
    BadRequest,
    Conflict,
    TooManyRequests,
    Unavailable,
    decode_body,
    json_response,
    read_body,
)
from agentstream.runtime.log_context import set_run_context
from agentstream.runtime.nats_contract import Producer, publish_event
from agentstream.runtime.openapi_bodies import json_body
from agentstream.runtime.temporal import describe_run
from gateway import conversation_gate
from gateway.auth import Principal, require_org
from gateway.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REQUEST_FINGERPRINT_MEMO,
    checked_key,
    idempotent_run_id,
    request_fingerprint,
)
from gateway.run_starter import start_chat_workflow
from gateway.state import Caller, GatewayState, State
from gateway.stream_tokens import conversation_access, run_url, stream_access
from gateway.unstarted import KEYED_QUEUED_PRODUCER, QUEUED_PRODUCER
from schemas import (
    DEFAULT_ORG,
    ChatInput,
    MessageAccepted,
    PostMessage,
    Stage,
    Status,
)

log = logging.getLogger(__name__)
router = APIRouter()

# An org's line moves as its runs finish: a few seconds, not a hammering retry loop.
_LINE_FULL_RETRY_AFTER_S = 5

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        description="Names the run: a retry with the same key (and org) gets the same run.",
    ),
]


@router.post(
    "/api/messages",
    status_code=202,
    openapi_extra=json_body(PostMessage),
    responses={
        202: {
            "description": "Run queued durably, its start follows (with an Idempotency-Key: "
            "started, or found for a repeated key)"
        },
        400: {},
        401: {},
        403: {},
        409: {},
        413: {},
        429: {},
        503: {},
    },
)
async def post_message(
    request: Request, gw: State, principal: Caller, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Queue a run for the message and return its ID and stream URL; its workflow follows.

    The answer comes once the run's ``queued`` event is stored: the stream exists and will end,
    with ``failed`` if the workflow cannot be started. Without an ``Idempotency-Key`` the start
    runs after the answer (``gateway.run_starter``). With one, it runs before: a retry of the
    same request (on any replica, even one racing the first) must find the run in Temporal to
    return it instead of starting another, and a start that failed must leave no run behind,
    so that the retry starts it.

    With tracing on, the run is a trace of its own, rooted in a ``run`` span here: the request
    (FastAPI's span, or the caller's ``traceparent``) is linked, not continued, so two runs
    never share a trace. The trace's ID goes in the run's ``queued`` event.
    """
    body = decode_body(await read_body(request, gw.settings.max_body_bytes), PostMessage)
    accepted = await accept_message(
        request, gw, principal, body, idempotency_key, route="/api/messages"
    )
    access = stream_access(gw, accepted.run, accepted.org)
    answer = MessageAccepted(
        workflow_id=accepted.run,
        conversation_id=accepted.conversation_id,
        stream_url=access.url,
        run_url=run_url(gw, accepted.run),
        stream_token=access.token,
        conversation_stream_url=conversation_access(gw, accepted.conversation_id, accepted.org).url,
    )
    replayed = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return json_response(answer, 202, replayed)


class Accepted(NamedTuple):
    """A run accepted for a message: queued durably, its workflow started or to follow."""

    org: str
    run: str
    conversation_id: str
    # Found, not started: an earlier request with the same Idempotency-Key started it.
    replayed: bool = False


async def accept_message(
    request: Request,
    gw: GatewayState,
    principal: Principal,
    body: PostMessage,
    idempotency_key: str | None,
    *,
    route: str,
) -> Accepted:
    """Queue a run for ``body`` as ``POST /api/messages`` does, for any route that starts runs
    (``route``, as its span names it); see ``post_message``."""
    request_span = tracing.caller(
        request.headers.get("traceparent"), request.headers.get("tracestate")
    )
    with tracing.span(
        "run",
        kind=SpanKind.SERVER,
        new_trace=True,
        links=[request_span] if request_span is not None else (),
        attributes={"http.request.method": "POST", "http.route": route},
    ):
        return await _accept(gw, principal, body, idempotency_key)


async def _accept(
    gw: GatewayState, principal: Principal, body: PostMessage, idempotency_key: str | None
) -> Accepted:
    if len(body.message) > gw.settings.max_message_chars:
        raise BadRequest(
            f"message longer than {gw.settings.max_message_chars} characters",
            limit="message_length",
        )
    org = body.org or principal.org or DEFAULT_ORG
    require_org(principal, org)
    if idempotency_key is None:
        run = f"run_{ULID()}"
        # This request's own task, and the start it leaves behind: they log the run.
        set_run_context(run, org)
        tracing.annotate({"agentstream.run": run, "agentstream.org": org})
        chat = await _queue(gw, org, body, run, producer=QUEUED_PRODUCER)
        gw.starter.start_soon(chat, run)
        return Accepted(org, run, chat.conversation_id)
    run = idempotent_run_id(org, checked_key(idempotency_key))
    set_run_context(run, org)
    tracing.annotate({"agentstream.run": run, "agentstream.org": org})
    fingerprint = request_fingerprint(org, body)
    replay = await _replay(gw, org, body, run, fingerprint)
    if replay is not None:
        return replay
    return await _start_keyed(gw, org, body, run, fingerprint)


async def _queue(
    gw: GatewayState, org: str, body: PostMessage, run: str, *, producer: Producer
) -> ChatInput:
    """Store ``run``'s ``queued`` event, unless the org's line is full; the workflow's input."""
    open_runs = await gw.open_runs.count(org)
    if open_runs >= gw.settings.max_open_runs_per_org:
        raise TooManyRequests(
            f"org {org} has {open_runs} runs waiting or running, the most it may have open "
            f"({gw.settings.max_open_runs_per_org}); retry once some have finished",
            headers={"Retry-After": str(_LINE_FULL_RETRY_AFTER_S)},
            limit="open_runs_per_org",
        )
    chat = ChatInput(
        prompt=body.message,
        conversation_id=body.conversation_id or run,
        org=org,
        connection_id=body.connection_id,
    )
    admission = await conversation_gate.admit(
        gw, org, chat.conversation_id, run, named=body.conversation_id is not None
    )
    # Queued is published first so it precedes anything a worker publishes for the run. Its
    # Nats-Msg-Id derives from the run ID: racing duplicates of a keyed request store it once.
    queued = Status(run=run, stage=Stage.QUEUED, trace_id=tracing.current_trace_id())
    await publish_event(gw.nc, org, queued, producer=producer)
    # After queued: whoever finds the run in its conversation's index finds its stream too.
    await conversation_gate.record(
        gw,
        org,
        chat.conversation_id,
        run,
        body.message,
        admission,
        end_if_refused=producer == QUEUED_PRODUCER,
    )
    return chat


async def _start_keyed(
    gw: GatewayState, org: str, body: PostMessage, run: str, fingerprint: str
) -> Accepted:
    """Queue and start a keyed run before answering; a failed start leaves it open to a retry."""
    chat = await _queue(gw, org, body, run, producer=KEYED_QUEUED_PRODUCER)
    try:
        await start_chat_workflow(
            gw.temporal, chat, run, run_timeout_s=gw.settings.run_timeout_s, fingerprint=fingerprint
        )
    except WorkflowAlreadyStartedError:
        # A duplicate of this keyed request, on this replica or another, started it first.
        replay = await _replay(gw, org, body, run, fingerprint)
        if replay is None:
            raise Unavailable("could not start the run, try again") from None
        return replay
    except Exception as exc:
        # No failed event: the run is left open, the client's retry with the same key starts it.
        log.exception("could not start workflow %s", run)
        raise Unavailable("could not start the run, try again") from exc
    gw.open_runs.started(org)
    return Accepted(org, run, chat.conversation_id)


async def _replay(
    gw: GatewayState, org: str, body: PostMessage, run: str, fingerprint: str
) -> Accepted | None:
    """The answer for a keyed run that already exists, or None when Temporal does not know it."""
    description = await describe_run(gw.temporal, run)
    if description is None:
        return None
    if await description.memo_value(REQUEST_FINGERPRINT_MEMO, None, type_hint=str) != fingerprint:
        raise Conflict(f"this {IDEMPOTENCY_KEY_HEADER} was already used for another request")
    return Accepted(org, run, body.conversation_id or run, replayed=True)
