"""Agent service configuration, from environment variables; defaults run the local stack."""

from __future__ import annotations

import msgspec

from agentstream.env import env_float, env_int, env_opt, env_str


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the agent service reads from its environment."""

    # Empty: the offline scripted model (no LLM); else an ``init_chat_model`` spec.
    model: str = ""
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    sandbox_root: str = ".run/sandboxes"
    command_timeout_s: float = 30.0
    max_steps: int = 25
    # Pace of the scripted model's tokens, so its output streams like a model's would.
    scripted_token_delay_s: float = 0.02
    flush_interval_s: float = 0.025
    flush_max_chars: int = 512
    max_body_bytes: int = 262_144
    max_concurrent_runs: int = 32

    @classmethod
    def from_env(cls) -> AgentSettings:
        """Read the settings from the process environment."""
        return cls(
            model=env_str("AGENT_MODEL", ""),
            openai_base_url=env_opt("OPENAI_BASE_URL"),
            openai_api_key=env_opt("OPENAI_API_KEY"),
            sandbox_root=env_str("SANDBOX_ROOT", ".run/sandboxes"),
            command_timeout_s=env_float("AGENT_COMMAND_TIMEOUT_S", 30.0),
            max_steps=env_int("AGENT_MAX_STEPS", 25),
            scripted_token_delay_s=env_float("SCRIPTED_TOKEN_DELAY_S", 0.02),
            flush_interval_s=env_float("AGENT_FLUSH_INTERVAL_S", 0.025),
            flush_max_chars=env_int("AGENT_FLUSH_MAX_CHARS", 512),
            max_body_bytes=env_int("AGENT_MAX_BODY_BYTES", 262_144),
            max_concurrent_runs=env_int("AGENT_MAX_CONCURRENT_RUNS", 32),
        )
