"""``POST /api/stream/{run}/chunk``: the callback bridge from agents into NATS.

It answers only after JetStream stored every event of the body, all or none, in order, as one
message in one round trip (gateway.run_appender). An agent that gets no answer can retry the same
body: the events' numbers make the retry a no-op, answered as a ``duplicate``.
"""

from __future__ import annotations

import itertools
from time import perf_counter, time
from typing import Any

import msgspec
from opentelemetry.trace import SpanKind
from starlette.types import Receive, Scope, Send

from agentstream.runtime import tracing
from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import BadRequest, PayloadTooLarge, Unauthorized, decode_body_with
from agentstream.runtime.log_context import set_run_context
from agentstream.runtime.openapi_bodies import json_body
from agentstream.runtime.tokens import TokenClaims, TokenError, verify_token
from gateway.auth import parse_bearer
from gateway.front_routes import RawRoute
from gateway.latency_metrics import posted_at
from gateway.raw_asgi import header, path_id, read_body, send_error, send_json
from gateway.run_appender import AgentEvent
from gateway.state import GatewayState
from schemas import (
    ID_PATTERN,
    Cancelled,
    Done,
    Event,
    Failed,
    Reset,
    decode_event_batch,
    encode,
    event_type,
)

# Only the worker (which Temporal tells how the run ended) may end a run or restart an attempt.
_WORKER_ONLY = (Done, Failed, Cancelled, Reset)


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """The bridge's answer: the ID of each stored event, in order (as in SSE ``id:`` lines).

    ``duplicate``: an earlier post had stored these events (a retry); ``ids`` is then empty.
    """

    ids: list[int]
    duplicate: bool = False


def authorize(gw: GatewayState, run: str, authorization: str | None) -> TokenClaims:
    """The claims of the callback token in ``authorization``, if it is valid for ``run``."""
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("callback token required: Authorization: Bearer <token>")
    try:
        claims = verify_token(gw.settings.callback_secret, token, "callback")
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    if claims.run != run:
        raise Unauthorized("callback token is for another run")
    return claims


async def publish_chunk(gw: GatewayState, run: str, claims: TokenClaims, body: bytes) -> Published:
    """Store one event or a JSON array of events of ``run``, in order."""
    events = decode_body_with(body, decode_event_batch)
    if len(events) > gw.settings.max_events_per_post:
        raise PayloadTooLarge(
            f"more than {gw.settings.max_events_per_post} events in one post",
            limit="events_per_post",
        )
    encoded = [encode(event) for event in events]
    for event, data in zip(events, encoded, strict=True):
        if isinstance(event, _WORKER_ONLY):
            raise BadRequest(f"{event_type(event)} events come from the worker, not the agent")
        if event.run != run:
            raise BadRequest(f"event for run {event.run!r} posted to run {run!r}")
        if event.attempt != claims.attempt:
            raise BadRequest(f"event of attempt {event.attempt}, token of attempt {claims.attempt}")
        if len(data) > gw.settings.max_event_bytes:
            raise PayloadTooLarge(
                f"an event larger than {gw.settings.max_event_bytes} bytes", limit="event_size"
            )
    if not events:
        return Published(ids=[])
    if any(later.n <= earlier.n for earlier, later in itertools.pairwise(events)):
        # The numbers tell a retried post's stored part from the rest: they must increase.
        raise BadRequest("event numbers (n) must increase within a post")
    outgoing = [
        AgentEvent(event.n, event_type(event), data)
        for event, data in zip(events, encoded, strict=True)
    ]
    started = perf_counter()
    stored = await gw.appender.append(claims.org, run, claims.attempt, outgoing)
    gw.bridge_timings.publish.observe(perf_counter() - started)
    if outgoing[0].n == 0 and not stored.duplicate:
        # The attempt's first event: the run's answer starts streaming now.
        posted = posted_at(run)
        if posted is not None:
            gw.bridge_timings.post_to_first_agent_event.observe(max(0.0, time() - posted))
    return Published(ids=stored.ids, duplicate=stored.duplicate)


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    # The hot path: with tracing off, not even the trace headers are looked up.
    if not tracing.enabled():
        await _publish(scope, receive, send)
        return
    # The agent's post carries its run's trace: the publish is a span in it.
    parent = tracing.caller(header(scope, b"traceparent"), header(scope, b"tracestate"))
    with tracing.span(
        "bridge publish",
        kind=SpanKind.SERVER,
        parent=parent,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/stream/{run}/chunk",
            "agentstream.run": str(scope["path_params"].get("run", "")),
        },
    ):
        await _publish(scope, receive, send)


async def _publish(scope: Scope, receive: Receive, send: Send) -> None:
    gw: GatewayState = scope["state"]["gateway"]
    try:
        run = path_id(scope, "run")
        # Refused before the body is read: an unauthorised sender cannot make us buffer it.
        claims = authorize(gw, run, header(scope, b"authorization"))
        # This request's own task: what it logs from here on is about the run's attempt.
        set_run_context(run, claims.org, claims.attempt)
        body = await read_body(scope, receive, gw.settings.max_body_bytes)
        published = await publish_chunk(gw, run, claims, body)
    except Exception as exc:
        tracing.mark_failed(f"refused: {exc!r}")
        await send_error(send, scope, exc)
        return
    tracing.annotate(
        {"agentstream.events": len(published.ids), "agentstream.duplicate": published.duplicate}
    )
    await send_json(send, 200, encode(published))


_OPERATION: dict[str, Any] = {
    "summary": "Publish Chunk",
    "description": "Store one event or a JSON array of events of ``run``, in order.",
    "operationId": "publish_chunk",
    "parameters": [
        {
            "name": "run",
            "in": "path",
            "required": True,
            "description": "Run ID (the Temporal workflow ID)",
            "schema": {"type": "string", "pattern": ID_PATTERN},
        },
        {
            "name": "Authorization",
            "in": "header",
            "required": True,
            "description": "Bearer <callback token of the run's attempt>",
            "schema": {"type": "string"},
        },
    ],
    **json_body(Event | list[Event]),
    "responses": {
        str(status): {"description": text}
        for status, text in (
            (200, "Stored"),
            (400, "Bad request"),
            (401, "Unauthorized"),
            (409, "The run has finished, or a newer attempt took over"),
            (413, "Too large"),
            (503, "Unavailable, retry"),
        )
    },
}

ROUTE = RawRoute(
    "POST",
    "/api/stream/{run}/chunk",
    r"/api/stream/(?P<run>[^/]+)/chunk",
    # Served ahead of the app's middleware: a body refused unread is drained here, as there.
    CloseUnreadBodyMiddleware(_serve),
    _OPERATION,
)
