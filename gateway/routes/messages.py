"""``POST /api/messages``: start a run and answer at once with where to stream it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response
from ulid import ULID

from agentstream.event_publisher import publish_event
from agentstream.http import BadRequest, Unavailable, decode_body, json_response, read_body
from agentstream.openapi_bodies import json_body
from gateway.auth import require_org
from gateway.state import Caller, State
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


@router.post(
    "/api/messages",
    status_code=202,
    openapi_extra=json_body(PostMessage),
    responses={
        202: {"description": "Run started"},
        400: {},
        401: {},
        403: {},
        413: {},
        429: {},
        503: {},
    },
)
async def post_message(request: Request, gw: State, principal: Caller) -> Response:
    """Start a ``ChatWorkflow`` for the message and return its ID and stream URL."""
    body = decode_body(await read_body(request, gw.settings.max_body_bytes), PostMessage)
    if len(body.message) > gw.settings.max_message_chars:
        raise BadRequest(
            f"message longer than {gw.settings.max_message_chars} characters",
            limit="message_length",
        )
    org = body.org or principal.org or DEFAULT_ORG
    require_org(principal, org)
    run = f"run_{ULID()}"
    chat = ChatInput(
        prompt=body.message,
        conversation_id=body.conversation_id or run,
        org=org,
        connection_id=body.connection_id,
    )
    # Queued is published first so it precedes anything a worker publishes for the run.
    await publish_event(gw.js, org, Status(run=run, stage=Stage.QUEUED), producer="gateway")
    try:
        await gw.temporal.start_workflow(WORKFLOW_NAME, chat, id=run, task_queue=task_queue(org))
    except Exception as exc:
        log.exception("could not start workflow %s", run)
        await publish_event(
            gw.js, org, Failed(run=run, reason="could not start the run"), producer="gateway"
        )
        raise Unavailable("could not start the run, try again") from exc
    base = gw.settings.public_url.rstrip("/")
    token = mint_stream_token(gw, run, org)
    accepted = MessageAccepted(
        workflow_id=run,
        conversation_id=chat.conversation_id,
        stream_url=f"{base}/api/stream/{run}?token={token}",
        run_url=f"{base}/api/runs/{run}",
        stream_token=token,
    )
    return json_response(accepted, 202)
