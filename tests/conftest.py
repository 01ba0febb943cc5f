"""Fixtures shared by every test: the local stack as real processes, on free ports."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from agentstream.devstack.postgres import local_database
from agentstream.devstack.stack import LocalStack
from tests.stacks import stack_fixture

# NATS, Temporal, two gateway replicas, an agent and a worker, started once per session.
stack = stack_fixture(
    "stack",
    scope="session",
    replicas=2,
    # Fast enough for a quick suite, slow enough that a run spans several chunks.
    token_delay_s="0.005",
    # Keepalives every second, so a test can see several without waiting 15 s for each.
    service_env={"SSE_PING_S": "1"},
)


@pytest.fixture(scope="session")
async def pg_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """An admin DSN, found as the stack finds one: DATABASE_URL, 127.0.0.1:5432, else embedded."""
    state = Path(tmp_path_factory.mktemp("postgres"))
    async with local_database(state, os.environ.get("DATABASE_URL") or None) as database:
        yield database.dsn


def database_dsn(server_dsn: str, name: str) -> str:
    """``server_dsn`` pointed at database ``name`` (host, port and socket options kept)."""
    return urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def throwaway_database(server_dsn: str, prefix: str) -> AsyncIterator[str]:
    """The DSN of a fresh, empty database on ``server_dsn``, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_dsn(server_dsn, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def db(stack: LocalStack) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the stack's database, for assertions on stored rows."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with bounded timeouts."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0)) as client:
        yield client
