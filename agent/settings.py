"""Agent service configuration, from environment variables; defaults run the local stack."""

from __future__ import annotations

import os

import msgspec

from agentstream.env import ConfigError, env_float, env_int, env_opt, env_str

# The developer stack's demo dataset, reached as its read-only role on the local PostgreSQL.
# Written out because a service must not import the developer stack (agentstream.demo_dataset);
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
            raise ConfigError(f"AGENT_DATABASES item must be id=dsn, got {item!r}")
        databases[name] = dsn
    return databases


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the agent service reads from its environment."""

    # Empty: the offline scripted model (no LLM); else an ``init_chat_model`` spec.
    model: str = ""
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    sandbox_root: str = ".run/sandboxes"
    sandbox_allow_network: bool = False
    # Run commands even where they cannot get a private mount view (else they are refused).
    sandbox_allow_unconfined: bool = False
    e2b_api_key: str | None = None
    command_timeout_s: float = 30.0
    max_steps: int = 25
    # Pace of the scripted model's tokens, so its output streams like a model's would.
    scripted_token_delay_s: float = 0.02
    flush_interval_s: float = 0.025
    flush_max_chars: int = 512
    max_body_bytes: int = 262_144
    max_concurrent_runs: int = 32
    # connection ID → DSN of a database the SQL tools may read; by default the demo dataset,
    # reached as the read-only role on the local PostgreSQL (the local stack sets it).
    databases: dict[str, str] = msgspec.field(default_factory=DEFAULT_DATABASES.copy)
    default_connection: str = DEFAULT_CONNECTION
    sql_timeout_ms: int = 5_000
    sql_row_cap: int = 200
    # Bytes of JSON one query's rows may come to; huge values are cut by the database itself.
    sql_max_bytes: int = 65_536

    @classmethod
    def from_env(cls) -> AgentSettings:
        """Read the settings from the process environment; refuse one that holds a secret."""
        for name, instead in _NOT_FOR_THE_AGENT.items():
            if os.environ.get(name):
                raise ConfigError(
                    f"{name} is set, but the agent must not hold it (sandbox commands could read"
                    f" it from the agent's environment): unset it; {instead}"
                )
        raw_databases = env_opt("AGENT_DATABASES")
        return cls(
            model=env_str("AGENT_MODEL", ""),
            openai_base_url=env_opt("OPENAI_BASE_URL"),
            openai_api_key=env_opt("OPENAI_API_KEY"),
            sandbox_root=env_str("SANDBOX_ROOT", ".run/sandboxes"),
            sandbox_allow_network=env_str("SANDBOX_ALLOW_NETWORK", "") in ("1", "true", "yes"),
            sandbox_allow_unconfined=env_str("SANDBOX_ALLOW_UNCONFINED", "")
            in ("1", "true", "yes"),
            e2b_api_key=env_opt("E2B_API_KEY"),
            command_timeout_s=env_float("AGENT_COMMAND_TIMEOUT_S", 30.0),
            max_steps=env_int("AGENT_MAX_STEPS", 25),
            scripted_token_delay_s=env_float("SCRIPTED_TOKEN_DELAY_S", 0.02),
            flush_interval_s=env_float("AGENT_FLUSH_INTERVAL_S", 0.025),
            flush_max_chars=env_int("AGENT_FLUSH_MAX_CHARS", 512),
            max_body_bytes=env_int("AGENT_MAX_BODY_BYTES", 262_144),
            max_concurrent_runs=env_int("AGENT_MAX_CONCURRENT_RUNS", 32),
            databases=parse_databases(raw_databases) if raw_databases else DEFAULT_DATABASES.copy(),
            default_connection=env_str("AGENT_DEFAULT_CONNECTION", DEFAULT_CONNECTION),
            sql_timeout_ms=env_int("AGENT_SQL_TIMEOUT_MS", 5_000),
            sql_row_cap=env_int("AGENT_SQL_ROW_CAP", 200),
            sql_max_bytes=env_int("AGENT_SQL_MAX_BYTES", 65_536),
        )
