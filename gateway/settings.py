"""Gateway configuration: each setting's variable, type and default; defaults run the local stack.

A field's variable is its name in upper case (``SSE_PING_S``); the shared ones (``NATS_*``,
``TEMPORAL_*``, ``DATABASE_URL``, ``CALLBACK_SECRET``) come from :class:`TrustedSettings`.
"""

from __future__ import annotations

import msgspec

from agentstream.runtime.settings import CommaList, TrustedSettings
from agentstream.runtime.temporal import DEFAULT_RUN_TIMEOUT_S
from gateway.unstarted import DEFAULT_START_GRACE_S


class GatewaySettings(TrustedSettings, frozen=True, kw_only=True):
    """Everything the gateway reads from its environment."""

    public_url: str = ""
    # Origins of pages served elsewhere that may call the API and read its streams (``*``: any);
    # none, no CORS header (the gateway's own page is same-origin).
    cors_allow_origins: CommaList = msgspec.field(default_factory=list)
    runs_max_age_s: float = 86_400.0
    runs_replicas: int = 1
    sse_ping_s: float = 15.0
    sse_retry_ms: int = 2_000
    sse_client_queue: int = 1_024
    # How long a live stream may stay silent before the gateway re-reads the stream's tail.
    sse_idle_check_s: float = 5.0
    sse_send_timeout_s: float = 30.0
    # How often a silent stream asks Temporal whether its run closed without a terminal event.
    sse_terminal_check_s: float = 30.0
    # On shutdown, streams get this long to finish before they are ended; clients resume
    # elsewhere with Last-Event-ID, so a long grace would only delay them.
    sse_shutdown_grace_s: float = 1.0
    max_body_bytes: int = 1_048_576
    max_events_per_post: int = 500
    max_event_bytes: int = 65_536
    max_message_chars: int = 32_000
    # Authentication: none configured means open (the local stack).
    api_keys: str = ""
    jwt_hs256_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_org_claim: str = "org"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    stream_token_ttl_s: int = 3_600
    rate_limit_rps: float = 20.0
    rate_limit_burst: int = 40
    max_streams_per_key: int = 64
    # Every run's overall deadline (its workflow's execution timeout): past it, it fails.
    run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S
    # Runs an org may have open at once (waiting for an agent, or running); past it
    # POST /api/messages answers 429 at the door instead of queueing without end.
    max_open_runs_per_org: int = 1_000
    # A run whose stream holds only the gateway's ``queued`` for this long, unknown to Temporal,
    # is ended ``failed`` (its gateway died before starting it); starts are given up at half.
    start_grace_s: float = DEFAULT_START_GRACE_S
