"""Typed reads of environment variables, for each service's settings module."""

from __future__ import annotations

import os


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def env_str(name: str, default: str) -> str:
    """The variable's value, or ``default`` when unset or empty."""
    return os.environ.get(name) or default


def env_opt(name: str) -> str | None:
    """The variable's value, or None when unset or empty."""
    return os.environ.get(name) or None


def env_int(name: str, default: int) -> int:
    """The variable as an integer; a malformed value is a :class:`ConfigError`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    """The variable as a float; a malformed value is a :class:`ConfigError`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable as a list of non-empty items."""
    raw = os.environ.get(name)
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# A development secret so the local stack runs with no configuration; deployments set their own.
DEV_CALLBACK_SECRET = "agentstream-dev-secret-change-me"
