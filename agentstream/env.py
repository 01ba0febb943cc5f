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
# A development secret for services started by hand on a developer's machine, accepted only where
# LOCAL_STACK_ENV says so; `agentstream up` mints a random one per stack.
DEV_CALLBACK_SECRET = "agentstream-dev-secret-change-me"
# Set to 1 by the local stack (or by hand, on a developer's machine): this is not a deployment.
LOCAL_STACK_ENV = "AGENTSTREAM_LOCAL_STACK"
# The deploy/ templates' placeholder, in any case: never a secret.
_PLACEHOLDER_SECRET = "change-me"


def callback_secret_from_env() -> str:
    """``CALLBACK_SECRET``; the built-in development secret only inside the local stack.

    Anyone who knows the secret can forge callback and stream tokens for every run, so a
    deployment must not run with a public one by accident: unset, the development secret or a
    template placeholder is a :class:`ConfigError`, unless ``AGENTSTREAM_LOCAL_STACK=1``.
    """
    secret = os.environ.get("CALLBACK_SECRET") or ""
    if os.environ.get(LOCAL_STACK_ENV) == "1":
        return secret or DEV_CALLBACK_SECRET
    if not secret:
        problem = "is not set"
    elif secret == DEV_CALLBACK_SECRET:
        problem = "is the built-in development secret"
    elif secret.lower() == _PLACEHOLDER_SECRET:
        problem = "is the deploy template's placeholder"
    else:
        return secret
    raise ConfigError(
        f"CALLBACK_SECRET {problem}: set it to a random secret shared by every gateway and "
        "worker (e.g. `openssl rand -hex 32`); on a development machine, "
        f"{LOCAL_STACK_ENV}=1 accepts the built-in development secret"
    )
