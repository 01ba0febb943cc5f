"""Gateway configuration, from environment variables; defaults run the local stack."""

from __future__ import annotations

import msgspec

from agentstream.env import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TEMPORAL_ADDRESS,
    DEV_CALLBACK_SECRET,
    callback_secret_from_env,
    env_float,
    env_int,
    env_opt,
    env_str,
)
from agentstream.nats_conn import NatsSettings
from gateway.unstarted import DEFAULT_START_GRACE_S
from schemas import DEFAULT_RUN_TIMEOUT_S


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the gateway reads from its environment."""

    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    temporal_namespace: str = "default"
    database_url: str = DEFAULT_DATABASE_URL
    callback_secret: str = DEV_CALLBACK_SECRET
    public_url: str = ""
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

    @classmethod
    def from_env(cls) -> GatewaySettings:
        """Read the settings from the process environment."""
        return cls(
            nats=NatsSettings.from_env(),
            temporal_address=env_str("TEMPORAL_ADDRESS", DEFAULT_TEMPORAL_ADDRESS),
            temporal_namespace=env_str("TEMPORAL_NAMESPACE", "default"),
            database_url=env_str("DATABASE_URL", DEFAULT_DATABASE_URL),
            callback_secret=callback_secret_from_env(),
            public_url=env_str("PUBLIC_URL", ""),
            runs_max_age_s=env_float("RUNS_MAX_AGE_S", 86_400.0),
            runs_replicas=env_int("RUNS_REPLICAS", 1),
            sse_ping_s=env_float("SSE_PING_S", 15.0),
            sse_retry_ms=env_int("SSE_RETRY_MS", 2_000),
            sse_client_queue=env_int("SSE_CLIENT_QUEUE", 1_024),
            sse_idle_check_s=env_float("SSE_IDLE_CHECK_S", 5.0),
            sse_send_timeout_s=env_float("SSE_SEND_TIMEOUT_S", 30.0),
            sse_terminal_check_s=env_float("SSE_TERMINAL_CHECK_S", 30.0),
            sse_shutdown_grace_s=env_float("SSE_SHUTDOWN_GRACE_S", 1.0),
            max_body_bytes=env_int("MAX_BODY_BYTES", 1_048_576),
            max_events_per_post=env_int("MAX_EVENTS_PER_POST", 500),
            max_event_bytes=env_int("MAX_EVENT_BYTES", 65_536),
            max_message_chars=env_int("MAX_MESSAGE_CHARS", 32_000),
            api_keys=env_str("API_KEYS", ""),
            jwt_hs256_secret=env_opt("JWT_HS256_SECRET"),
            jwt_public_key=env_opt("JWT_PUBLIC_KEY"),
            jwt_jwks_url=env_opt("JWT_JWKS_URL"),
            jwt_org_claim=env_str("JWT_ORG_CLAIM", "org"),
            jwt_audience=env_opt("JWT_AUDIENCE"),
            jwt_issuer=env_opt("JWT_ISSUER"),
            stream_token_ttl_s=env_int("STREAM_TOKEN_TTL_S", 3_600),
            rate_limit_rps=env_float("RATE_LIMIT_RPS", 20.0),
            rate_limit_burst=env_int("RATE_LIMIT_BURST", 40),
            max_streams_per_key=env_int("MAX_STREAMS_PER_KEY", 64),
            run_timeout_s=env_float("RUN_TIMEOUT_S", DEFAULT_RUN_TIMEOUT_S),
            max_open_runs_per_org=env_int("MAX_OPEN_RUNS_PER_ORG", 1_000),
            start_grace_s=env_float("START_GRACE_S", DEFAULT_START_GRACE_S),
        )
