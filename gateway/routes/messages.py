"""``POST /api/messages``: start a run and answer at once with where to stream it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from ulid import ULID

from agentstream.event_publisher import publish_event
from agentstream.http import (
    BadRequest,
    Conflict,
    TooManyRequests,
    Unavailable,
    decode_body,
    json_response,
    read_body,
)
from agentstream.openapi_bodies import json_body
from gateway.auth import require_org
from gateway.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REQUEST_FINGERPRINT_MEMO,
    checked_key,
    idempotent_run_id,
    request_fingerprint,
)
from gateway.state import Caller, GatewayState, State
from gateway.stream_tokens import mint_stream_token
from schemas import (
    DEFAULT_ORG,
    ChatInput,
    Failed,
    MessageAccepted,
    PostMessage,
    Stage,
    Status,
    task_queue,
)

log = logging.getLogger(__name__)
router = APIRouter()

WORKFLOW_NAME = "ChatWorkflow"
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
        202: {"description": "Run started (or, for a repeated Idempotency-Key, found)"},
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
    """Start a ``ChatWorkflow`` for the message and return its ID and stream URL.

    With an ``Idempotency-Key`` header, a retry of the same request (on any replica, even one
    racing the first) returns the run the first one started instead of starting another.
    """
    body = decode_body(await read_body(request, gw.settings.max_body_bytes), PostMessage)
    if len(body.message) > gw.settings.max_message_chars:
        raise BadRequest(
            f"message longer than {gw.settings.max_message_chars} characters",
            limit="message_length",
        )
    org = body.org or principal.org or DEFAULT_ORG
    require_org(principal, org)
    if idempotency_key is None:
        return await _start(gw, org, body, run=f"run_{ULID()}", fingerprint=None)
    run = idempotent_run_id(org, checked_key(idempotency_key))
    fingerprint = request_fingerprint(org, body)
    replay = await _replay(gw, org, body, run, fingerprint)
    if replay is not None:
        return replay
    return await _start(gw, org, body, run=run, fingerprint=fingerprint)


async def _start(
    gw: GatewayState, org: str, body: PostMessage, *, run: str, fingerprint: str | None
) -> Response:
    """Start ``run``, unless the org's line is full."""
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
    # Queued is published first so it precedes anything a worker publishes for the run. Its
    # Nats-Msg-Id derives from the run ID: racing duplicates of a keyed request store it once.
    await publish_event(gw.js, org, Status(run=run, stage=Stage.QUEUED), producer="gateway")
    try:
        await gw.temporal.start_workflow(
            WORKFLOW_NAME,
            chat,
            id=run,
            task_queue=task_queue(org),
            execution_timeout=timedelta(seconds=gw.settings.run_timeout_s),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={REQUEST_FINGERPRINT_MEMO: fingerprint} if fingerprint is not None else None,
        )
    except WorkflowAlreadyStartedError:
        # A duplicate of this keyed request, on this replica or another, started it first.
        replay = await _replay(gw, org, body, run, fingerprint)
        if replay is None:
            raise Unavailable("could not start the run, try again") from None
        return replay
    except Exception as exc:
        log.exception("could not start workflow %s", run)
        if fingerprint is None:
            # A keyed run is left open: the client's retry with the same key starts it.
            await publish_event(
                gw.js, org, Failed(run=run, reason="could not start the run"), producer="gateway"
            )
        raise Unavailable("could not start the run, try again") from exc
    gw.open_runs.started(org)
    return _accepted(gw, org, run, chat.conversation_id)


async def _replay(
    gw: GatewayState, org: str, body: PostMessage, run: str, fingerprint: str | None
) -> Response | None:
    """The answer for a keyed run that already exists, or None when Temporal does not know it."""
    try:
        description = await gw.temporal.get_workflow_handle(run).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if await description.memo_value(REQUEST_FINGERPRINT_MEMO, None, type_hint=str) != fingerprint:
        raise Conflict(f"this {IDEMPOTENCY_KEY_HEADER} was already used for another request")
    return _accepted(gw, org, run, body.conversation_id or run, replayed=True)


def _accepted(
    gw: GatewayState, org: str, run: str, conversation_id: str, *, replayed: bool = False
) -> Response:
    base = gw.settings.public_url.rstrip("/")
    token = mint_stream_token(gw, run, org)
    accepted = MessageAccepted(
        workflow_id=run,
        conversation_id=conversation_id,
        stream_url=f"{base}/api/stream/{run}?token={token}",
        run_url=f"{base}/api/runs/{run}",
        stream_token=token,
    )
    return json_response(accepted, 202, {"Idempotent-Replayed": "true"} if replayed else None)
