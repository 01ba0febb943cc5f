"""Agent service configuration: each setting's variable, type and default (the local stack's).

A field's variable is ``AGENT_`` and its name in upper case (``AGENT_MAX_STEPS``), unless it
names another; the sandbox's (``SANDBOX_*``, ``E2B_API_KEY``) come from :class:`SandboxSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from agentstream.runtime.settings import (
    DEFAULT_AGENT_CAPACITY,
    ConfigError,
    EnvSettings,
    SandboxSettings,
    from_env_with,
)

# The developer stack's demo dataset, reached as its read-only role on the local PostgreSQL.
# Written out because a service must not import the developer stack
# (agentstream.devstack.demo_dataset);
# tests/unit/test_settings.py keeps the two equal.
DEFAULT_CONNECTION = "demo"
DEFAULT_DATABASES = {DEFAULT_CONNECTION: "postgresql://agentstream_reader@127.0.0.1:5432/postgres"}

# What the agent must never hold, with what it uses instead: sandbox commands run beside it and
# could read them from its environment (/proc/<pid>/environ) when they share its user.
_NOT_FOR_THE_AGENT = {
    "CALLBACK_SECRET": "the worker hands it a callback token per run",
    "DATABASE_URL": "AGENT_DATABASES names the databases it may read, each as a read-only role",
}


def parse_databases(raw: str) -> dict[str, str]:
    """``id=dsn;id=dsn`` into a mapping; DSNs may contain ``=`` but not ``;``."""
    databases: dict[str, str] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        name, sep, dsn = item.strip().partition("=")
        if not sep or not name or not dsn:
            raise ValueError(f"item must be id=dsn, got {item!r}")
        databases[name] = dsn
    return databases


Databases = Annotated[dict[str, str], from_env_with(parse_databases)]


class AgentSettings(
    EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"AGENT_{name.upper()}"
):
    """Everything the agent service reads from its environment."""

    # Empty: the offline scripted model (no LLM); else an ``init_chat_model`` spec.
    model: str = ""
    openai_base_url: str | None = msgspec.field(default=None, name="OPENAI_BASE_URL")
    openai_api_key: str | None = msgspec.field(default=None, name="OPENAI_API_KEY")
    # The agent runs commands in sandboxes the worker made; it never makes one itself.
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    command_timeout_s: float = 30.0
    max_steps: int = 25
    # Pace of the scripted model's tokens, so its output streams like a model's would.
    scripted_token_delay_s: float = msgspec.field(default=0.02, name="SCRIPTED_TOKEN_DELAY_S")
    flush_interval_s: float = 0.025
    flush_max_chars: int = 512
    max_body_bytes: int = 262_144
    max_concurrent_runs: int = DEFAULT_AGENT_CAPACITY
    # connection ID → DSN of a database the SQL tools may read; by default the demo dataset,
    # reached as the read-only role on the local PostgreSQL (the local stack sets it).
    databases: Databases = msgspec.field(default_factory=DEFAULT_DATABASES.copy)
    default_connection: str = DEFAULT_CONNECTION
    sql_timeout_ms: int = 5_000
    sql_row_cap: int = 200
    # Bytes of JSON one query's rows may come to; huge values are cut by the database itself.
    sql_max_bytes: int = 65_536

    @classmethod
    def refuse(cls, environ: Mapping[str, str]) -> None:
        """Refuse an environment holding a secret the agent must not have."""
        for name, instead in _NOT_FOR_THE_AGENT.items():
            if environ.get(name):
                raise ConfigError(
                    f"{name} is set, but the agent must not hold it (sandbox commands could read"
                    f" it from the agent's environment): unset it; {instead}"
                )
