"""How the local stack finds or starts its PostgreSQL (agentstream.devstack.postgres)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import asyncpg
import psutil
import pytest

from agentstream.devstack.postgres import (
    SYSTEM_URL,
    PostgresUnavailable,
    database_answers,
    local_database,
    redact_dsn,
)


def _closed_port() -> int:
    # Bound then released, so nothing listens there for the next few moments.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gone(pid: int) -> bool:
    # The daemonized postmaster is reparented; a non-reaping init can leave it a zombie.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
async def system_up() -> None:
    if not await database_answers(SYSTEM_URL):
        pytest.skip(f"no PostgreSQL at {SYSTEM_URL}")


async def test_env_url_that_answers_is_used(system_up: None, tmp_path: Path) -> None:
    async with local_database(tmp_path, SYSTEM_URL) as db:
        assert db.source == "env"
        assert db.dsn == SYSTEM_URL
    assert not (tmp_path / "postgres").exists()


async def test_env_url_that_does_not_answer_fails_without_password(tmp_path: Path) -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{_closed_port()}/app"
    with pytest.raises(PostgresUnavailable) as info:
        async with local_database(tmp_path, url):
            pytest.fail("must not yield")
    message = str(info.value)
    assert "s3cret" not in message
    assert redact_dsn(url) in message


async def test_system_server_is_used_without_env_url(system_up: None, tmp_path: Path) -> None:
    async with local_database(tmp_path, None) as db:
        assert db.source == "system"
        assert db.dsn == SYSTEM_URL


async def test_embedded_server_starts_and_stops(tmp_path: Path) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    pid: int | None = None
    try:
        async with local_database(tmp_path / "state", None, system_url=unreachable) as db:
            assert db.source == "embedded"
            pid = int((tmp_path / "state" / "postgres" / "postmaster.pid").read_text().split()[0])
            assert psutil.pid_exists(pid)
            conn = await asyncpg.connect(db.dsn)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
        assert _gone(pid)
    finally:
        # If the test failed before the stop, do not leave a postmaster behind.
        if pid is not None and not _gone(pid):
            psutil.Process(pid).kill()


async def test_embedded_server_left_by_a_killed_stack_is_stopped_next_time(tmp_path: Path) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    script = (
        "import asyncio, pathlib, sys\n"
        "from agentstream.devstack.postgres import local_database\n"
        "async def main():\n"
        f"    async with local_database(pathlib.Path(sys.argv[1]), None, {unreachable!r}):\n"
        "        print('up', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    stack = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    pid: int | None = None
    try:
        assert stack.stdout is not None
        assert await asyncio.wait_for(stack.stdout.readline(), 60) == b"up\n"
        pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])
        stack.kill()  # no atexit, so the server outlives it
        await stack.wait()
        async with local_database(tmp_path, None, system_url=unreachable) as db:
            assert db.source == "embedded"
            assert int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0]) == pid
        assert _gone(pid)
    finally:
        if stack.returncode is None:
            stack.kill()
            await stack.wait()
        if pid is not None and not _gone(pid):
            psutil.Process(pid).kill()


async def test_database_answers_false_on_closed_port() -> None:
    assert not await database_answers(f"postgresql://x@127.0.0.1:{_closed_port()}/x", timeout=1)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:@/db?host=/tmp", "postgresql://u:@/db?host=/tmp"),
        (
            "postgresql://h/db?user=u&password=s3cret&x=1",
            "postgresql://h/db?user=u&password=***&x=1",
        ),
        ("postgresql://u:a@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql://u:s3cret@[::1/db", "<unparseable DSN>"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected
