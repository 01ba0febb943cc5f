"""Worker configuration, from environment variables; defaults run the local stack."""

from __future__ import annotations

import msgspec

from agentstream.env import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TEMPORAL_ADDRESS,
    DEV_CALLBACK_SECRET,
    ConfigError,
    callback_secret_from_env,
    env_float,
    env_int,
    env_list,
    env_opt,
    env_str,
)
from agentstream.nats_conn import NatsSettings
from schemas import DEFAULT_ORG

# The agent service's own default AGENT_MAX_CONCURRENT_RUNS (agent/settings.py).
AGENT_DEFAULT_MAX_CONCURRENT_RUNS = 32


def parse_stage_delays(raw: str) -> dict[str, float]:
    """``activity=seconds,...`` into a mapping (a test aid, see ``test_stage_delays``)."""
    delays: dict[str, float] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        problem = ConfigError(f"WORKER_TEST_STAGE_DELAYS item must be activity=seconds: {item!r}")
        name, sep, seconds = item.strip().partition("=")
        if not sep or not name:
            raise problem
        try:
            delays[name] = float(seconds)
        except ValueError:
            raise problem from None
    return delays


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
    # How many agent calls this worker makes at once, over all the orgs it serves (split evenly
    # between them, each org having its own agent-call queue). Runs beyond it wait in Temporal,
    # not in the agent. It must not exceed what the agents behind AGENT_URL accept, so that a
    # refusal (503 agent_busy, retried, never a failure) stays the exception: the default is the
    # agent service's default AGENT_MAX_CONCURRENT_RUNS (32), for one worker in front of one agent.
    # With W workers in front of agents that accept C runs in all, set C / W.
    agent_slots: int = AGENT_DEFAULT_MAX_CONCURRENT_RUNS
    # TEST AID, empty in any deployment: pause the named activities (``create_sandbox``,
    # ``save_message``) for that many seconds mid-way, so tests can cancel a run inside them.
    test_stage_delays: dict[str, float] = msgspec.field(default_factory=dict)

    def agent_slots_per_org(self) -> int:
        """The agent calls each served org may have in flight (its agent-call queue's slots)."""
        if self.agent_slots < len(self.orgs):
            raise ConfigError(
                f"WORKER_AGENT_SLOTS ({self.agent_slots}) is less than the number of orgs "
                f"served ({len(self.orgs)}): each org needs at least one agent slot"
            )
        return self.agent_slots // len(self.orgs)

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """Read the settings from the process environment."""
        return cls(
            orgs=env_list("WORKER_ORGS", [DEFAULT_ORG]),
            nats=NatsSettings.from_env(),
            temporal_address=env_str("TEMPORAL_ADDRESS", DEFAULT_TEMPORAL_ADDRESS),
            temporal_namespace=env_str("TEMPORAL_NAMESPACE", "default"),
            database_url=env_str("DATABASE_URL", DEFAULT_DATABASE_URL),
            callback_secret=callback_secret_from_env(),
            agent_url=env_str("AGENT_URL", "http://127.0.0.1:8100"),
            gateway_urls=env_list("GATEWAY_URL", ["http://127.0.0.1:8000"]),
            sandbox_root=env_str("SANDBOX_ROOT", ".run/sandboxes"),
            sandbox=env_str("SANDBOX", "local"),
            sandbox_allow_network=env_str("SANDBOX_ALLOW_NETWORK", "") in ("1", "true", "yes"),
            e2b_api_key=env_opt("E2B_API_KEY"),
            e2b_template=env_str("E2B_TEMPLATE", "base"),
            heartbeat_s=env_float("WORKER_HEARTBEAT_S", 2.0),
            agent_slots=env_int("WORKER_AGENT_SLOTS", AGENT_DEFAULT_MAX_CONCURRENT_RUNS),
            test_stage_delays=parse_stage_delays(env_str("WORKER_TEST_STAGE_DELAYS", "")),
        )
