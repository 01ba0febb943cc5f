"""Worker configuration, from environment variables; defaults run the local stack."""

from __future__ import annotations

import msgspec

from agentstream.env import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TEMPORAL_ADDRESS,
    DEV_CALLBACK_SECRET,
    env_float,
    env_list,
    env_opt,
    env_str,
)
from agentstream.nats_conn import NatsSettings
from schemas import DEFAULT_ORG


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the worker reads from its environment."""

    orgs: list[str] = msgspec.field(default_factory=lambda: [DEFAULT_ORG])
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    temporal_namespace: str = "default"
    database_url: str = DEFAULT_DATABASE_URL
    callback_secret: str = DEV_CALLBACK_SECRET
    agent_url: str = "http://127.0.0.1:8100"
    # Where agents post chunks: the load balancer, or every gateway replica (comma-separated).
    gateway_urls: list[str] = msgspec.field(default_factory=lambda: ["http://127.0.0.1:8000"])
    sandbox_root: str = ".run/sandboxes"
    sandbox: str = "local"
    sandbox_allow_network: bool = False
    e2b_api_key: str | None = None
    e2b_template: str = "base"
    heartbeat_s: float = 2.0

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """Read the settings from the process environment."""
        return cls(
            orgs=env_list("WORKER_ORGS", [DEFAULT_ORG]),
            nats=NatsSettings.from_env(),
            temporal_address=env_str("TEMPORAL_ADDRESS", DEFAULT_TEMPORAL_ADDRESS),
            temporal_namespace=env_str("TEMPORAL_NAMESPACE", "default"),
            database_url=env_str("DATABASE_URL", DEFAULT_DATABASE_URL),
            callback_secret=env_str("CALLBACK_SECRET", DEV_CALLBACK_SECRET),
            agent_url=env_str("AGENT_URL", "http://127.0.0.1:8100"),
            gateway_urls=env_list("GATEWAY_URL", ["http://127.0.0.1:8000"]),
            sandbox_root=env_str("SANDBOX_ROOT", ".run/sandboxes"),
            sandbox=env_str("SANDBOX", "local"),
            sandbox_allow_network=env_str("SANDBOX_ALLOW_NETWORK", "") in ("1", "true", "yes"),
            e2b_api_key=env_opt("E2B_API_KEY"),
            e2b_template=env_str("E2B_TEMPLATE", "base"),
            heartbeat_s=env_float("WORKER_HEARTBEAT_S", 2.0),
        )
