"""Reaching a deployment's NATS, Temporal and PostgreSQL from a one-shot command.

Settings come from the environment the services read (``NATS_URL``, ``NATS_USER``/``PASSWORD``/
``CREDS``, ``TEMPORAL_ADDRESS``/``NAMESPACE``, ``DATABASE_URL``), each overridable by a flag. A
service that cannot be reached is an :class:`Unreachable` naming it and its address, raised
within seconds: a debugging tool must not hang where the services would reconnect forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from temporalio.client import Client

from agentstream.runtime.message_store import MessageStore
from agentstream.runtime.nats_conn import connect_nats
from agentstream.runtime.settings import (
    DEFAULT_DATABASE_URL,
    EnvSettings,
    NatsSettings,
    TemporalSettings,
)
from agentstream.runtime.temporal import connect_temporal

CONNECT_TIMEOUT_S = 5.0


class OpsSettings(EnvSettings, frozen=True, kw_only=True, rename="upper"):
    """Where the deployment's services are: the variables its gateways and workers read."""

    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    temporal: TemporalSettings = msgspec.field(default_factory=TemporalSettings)
    database_url: str = DEFAULT_DATABASE_URL


class Unreachable(Exception):
    """A service could not be reached or refused the connection; the message says which."""


async def open_nats(settings: NatsSettings, *, name: str) -> NATS:
    """A NATS connection that tries each server a couple of times, then gives up."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        # Reported once, in Unreachable, instead of nats.py's traceback per try.
        errors.append(exc)

    try:
        return await connect_nats(
            settings,
            name=name,
            on_error=remember,
            max_reconnect_attempts=2,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
    except Exception as exc:  # nats.py raises its own errors, OSError and TimeoutError alike
        cause = errors[-1] if errors else exc
        raise Unreachable(f"cannot reach NATS at {settings.url}: {cause}") from None


async def open_temporal(settings: TemporalSettings) -> Client:
    """A Temporal client of the configured frontend and namespace."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
            return await connect_temporal(settings)
    except TimeoutError:
        problem = f"no answer within {CONNECT_TIMEOUT_S * 2:g} s"
    except RuntimeError as exc:  # temporalio's "Failed client connect"
        problem = str(exc)
    raise Unreachable(
        f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): {problem}"
    )


def _server_of(dsn: str) -> str:
    """Where ``dsn`` points, without its credentials."""
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    except ValueError:
        return "DATABASE_URL (unparseable)"


@contextlib.asynccontextmanager
async def message_store(dsn: str) -> AsyncIterator[MessageStore]:
    """The message store at ``dsn``, read as it is (no migration: this only looks)."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=1, timeout=CONNECT_TIMEOUT_S, command_timeout=10
        )
    except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
        raise Unreachable(f"cannot reach PostgreSQL at {_server_of(dsn)}: {exc}") from None
    try:
        yield MessageStore(pool)
    finally:
        await pool.close()
