"""Escape attempts from the local sandbox fail, and the host is unharmed."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentstream.sandbox import LocalSandboxProvider, SandboxError
from agentstream.sandbox.confinement import pids_of, run_uid
from agentstream.sandbox.local import LocalSandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids need root")


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    # Under the system temp dir, which every uid can traverse (pytest's own tmp is 0700).
    root = Path(tempfile.mkdtemp(prefix="agentstream-escape-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def sandbox(sandbox_root: Path) -> AsyncIterator[LocalSandbox]:
    provider = LocalSandboxProvider(sandbox_root)
    info = await provider.create("run_escape_attempts")
    try:
        yield await provider.connect(info)
    finally:
        await provider.destroy(info)


async def test_commands_run_as_the_runs_own_unprivileged_uid(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("id -u; touch made-here && ls", timeout_s=10)
    assert result.stdout.split()[0] == str(run_uid("run_escape_attempts"))
    assert "made-here" in result.stdout
    await sandbox.write_file("by-the-agent.txt", "hello")
    edited = await sandbox.run_command(
        "echo more >> by-the-agent.txt && cat by-the-agent.txt", timeout_s=10
    )
    assert edited.exit_code == 0 and "more" in edited.stdout


async def test_reading_etc_shadow_fails(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("cat /etc/shadow", timeout_s=10)
    assert result.exit_code != 0 and "Permission denied" in result.stderr
    assert "root:" not in result.stdout
    with pytest.raises(SandboxError):
        await sandbox.read_file("/etc/shadow")


async def test_a_symlink_out_of_the_workspace_reads_nothing(
    sandbox: LocalSandbox, sandbox_root: Path
) -> None:
    secret = sandbox_root.parent / f"agentstream-secret-{os.getpid()}"
    secret.write_text("top secret")
    secret.chmod(0o600)
    try:
        made = await sandbox.run_command(f"ln -s {secret} leak && cat leak", timeout_s=10)
        assert made.exit_code != 0 and "top secret" not in made.stdout
        with pytest.raises(SandboxError):
            await sandbox.read_file("leak")
        other = await sandbox.run_command(f"ls {sandbox_root}", timeout_s=10)
        assert other.exit_code != 0, "other runs' workspaces cannot be listed"
    finally:
        secret.unlink()


async def test_a_fork_bomb_is_contained_and_leaves_nothing_behind(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("bomb() { bomb | bomb & }; bomb; sleep 2", timeout_s=5)
    assert "Cannot fork" in result.stderr, "stopped by the per-run process limit"
    assert not pids_of(run_uid("run_escape_attempts")), "every process of the run is gone"
    host = await asyncio.create_subprocess_exec("true")
    assert await host.wait() == 0, "the host can still start processes"
    after = await sandbox.run_command("echo still-here", timeout_s=5)
    assert after.exit_code == 0 and after.stdout == "still-here\n", "the run's next command works"


async def test_a_ten_gigabyte_write_is_stopped_at_the_file_size_limit(
    sandbox: LocalSandbox, sandbox_root: Path
) -> None:
    result = await sandbox.run_command("head -c 10G /dev/zero > big", timeout_s=20)
    assert result.exit_code != 0
    size = (sandbox_root / "run_escape_attempts" / "big").stat().st_size
    assert size <= 64 << 20


async def test_no_network_not_even_loopback(sandbox: LocalSandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            "python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
            f"{port}), timeout=2); print('connected')\""
        )
        result = await sandbox.run_command(probe, timeout_s=10)
    assert "connected" not in result.stdout
    assert result.exit_code != 0 and "Error" in result.stderr
