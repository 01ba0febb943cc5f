"""Worker configuration: each setting's variable, type and default; defaults run the local stack.

The shared settings (``NATS_*``, ``TEMPORAL_*``, ``DATABASE_URL``, ``CALLBACK_SECRET``) come from
:class:`TrustedSettings`, the sandbox's (``SANDBOX*``, ``E2B_*``) from :class:`SandboxSettings`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from agentstream.runtime.settings import (
    DEFAULT_AGENT_CAPACITY,
    DEFAULT_AGENT_URL,
    DEFAULT_GATEWAY_URL,
    CommaList,
    ConfigError,
    SandboxSettings,
    TrustedSettings,
    from_env_with,
)
from schemas import DEFAULT_ORG


def parse_stage_delays(raw: str) -> dict[str, float]:
    """``activity=seconds,...`` into a mapping (a test aid, see ``test_stage_delays``)."""
    delays: dict[str, float] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        problem = ValueError(f"item must be activity=seconds: {item!r}")
        name, sep, seconds = item.strip().partition("=")
        if not sep or not name:
            raise problem
        try:
            delays[name] = float(seconds)
        except ValueError:
            raise problem from None
    return delays


StageDelays = Annotated[dict[str, float], from_env_with(parse_stage_delays)]


class WorkerSettings(TrustedSettings, frozen=True, kw_only=True):
    """Everything the worker reads from its environment."""

    orgs: CommaList = msgspec.field(default_factory=lambda: [DEFAULT_ORG], name="WORKER_ORGS")
    agent_url: str = DEFAULT_AGENT_URL
    # Where agents post chunks: the load balancer, or every gateway replica (comma-separated).
    gateway_urls: CommaList = msgspec.field(
        default_factory=lambda: [DEFAULT_GATEWAY_URL], name="GATEWAY_URL"
    )
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    heartbeat_s: float = msgspec.field(default=2.0, name="WORKER_HEARTBEAT_S")
    # How many agent calls this worker makes at once, over all the orgs it serves (split evenly
    # between them, each org having its own agent-call queue). Runs beyond it wait in Temporal,
    # not in the agent. It must not exceed what the agents behind AGENT_URL accept, so that a
    # refusal (503 agent_busy, retried, never a failure) stays the exception: the default is the
    # agent service's default AGENT_MAX_CONCURRENT_RUNS, for one worker in front of one agent.
    # With W workers in front of agents that accept C runs in all, set C / W.
    agent_slots: int = msgspec.field(default=DEFAULT_AGENT_CAPACITY, name="WORKER_AGENT_SLOTS")
    # How much of its conversation a run's agent is given: the newest turns (prompt, answer and
    # the SQL it ran), no more than this many, and no more than this many characters in all.
    history_max_turns: int = msgspec.field(default=10, name="HISTORY_MAX_TURNS")
    history_max_chars: int = msgspec.field(default=20_000, name="HISTORY_MAX_CHARS")
    # TEST AID, empty in any deployment: pause the named activities (``create_sandbox``,
    # ``save_message``) for that many seconds mid-way, so tests can cancel a run inside them.
    test_stage_delays: StageDelays = msgspec.field(
        default_factory=dict, name="WORKER_TEST_STAGE_DELAYS"
    )

    def agent_slots_per_org(self) -> int:
        """The agent calls each served org may have in flight (its agent-call queue's slots)."""
        if self.agent_slots < len(self.orgs):
            raise ConfigError(
                f"WORKER_AGENT_SLOTS ({self.agent_slots}) is less than the number of orgs "
                f"served ({len(self.orgs)}): each org needs at least one agent slot"
            )
        return self.agent_slots // len(self.orgs)
