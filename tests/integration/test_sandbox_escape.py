"""Escape attempts from the local sandbox fail, and the host is unharmed."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentstream.runtime.sandbox import LocalSandboxProvider, SandboxError
from agentstream.runtime.sandbox.confinement import pids_of
from agentstream.runtime.sandbox.local import LocalSandbox
from schemas import SandboxInfo
from tests.temp_dirs import fresh_dir

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids need root")


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    # Under the system temp dir, which every uid can traverse (pytest's own tmp is 0700).
    with fresh_dir("agentstream-escape-") as root:
        yield root


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
    uid = int(result.stdout.split()[0])
    assert uid == sandbox._uid and uid >= 200_000
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
        other = await sandbox.run_command(f"ls -a {sandbox_root}", timeout_s=10)
        assert other.stdout.split() == [".", "..", sandbox.info.id], "nothing else is visible"
    finally:
        secret.unlink()


async def test_a_fork_bomb_is_contained_and_leaves_nothing_behind(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("bomb() { bomb | bomb & }; bomb; sleep 2", timeout_s=5)
    assert "Cannot fork" in result.stderr, "stopped by the per-run process limit"
    assert sandbox._uid is not None
    assert not pids_of(sandbox._uid), "every process of the run is gone"
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


# Two runs never share a uid: the old uid, a hash of the run ID, was the same for these two.
COLLIDING = ("run_uid_125", "run_uid_495")


@pytest.fixture
async def colliding(sandbox_root: Path) -> AsyncIterator[tuple[LocalSandbox, LocalSandbox]]:
    # Created by one provider (the worker's), used through another (the agent's), as in the
    # product: the uid travels between processes through the claims under the sandbox root.
    worker, agent = LocalSandboxProvider(sandbox_root), LocalSandboxProvider(sandbox_root)
    infos = [await worker.create(run) for run in COLLIDING]
    try:
        first, second = [await agent.connect(info) for info in infos]
        yield first, second
    finally:
        for info in infos:
            await worker.destroy(info)


async def test_runs_whose_old_uid_collided_run_as_different_uids(
    colliding: tuple[LocalSandbox, LocalSandbox],
) -> None:
    ids = [(await box.run_command("id -u", timeout_s=10)).stdout.strip() for box in colliding]
    assert ids[0] != ids[1]
    assert ids == [str(box._uid) for box in colliding]


async def test_a_run_cannot_read_the_workspace_of_another(
    colliding: tuple[LocalSandbox, LocalSandbox],
) -> None:
    first, second = colliding
    await first.run_command("echo first-secret > secret.txt", timeout_s=10)
    seen = await second.run_command(f"cat {first._workspace}/secret.txt", timeout_s=10)
    assert seen.exit_code != 0 and "first-secret" not in seen.stdout


async def _wait_for_file(path: Path, timeout_s: float = 10.0) -> None:
    """Wait until a command has made ``path``: it has started."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.01)


async def test_a_run_cannot_kill_the_commands_of_another(
    colliding: tuple[LocalSandbox, LocalSandbox],
) -> None:
    first, second = colliding
    running = asyncio.create_task(
        first.run_command("touch started; sleep 1; echo survived", timeout_s=20)
    )
    await _wait_for_file(first._workspace / "started")
    # Kills whatever it may signal; then its own clean-up kills every process of its uid.
    await second.run_command("kill -9 -1", timeout_s=10)
    result = await running
    assert (result.exit_code, result.stdout) == (0, "survived\n")


async def test_destroying_a_sandbox_kills_its_command_and_frees_its_uid(
    sandbox_root: Path,
) -> None:
    provider = LocalSandboxProvider(sandbox_root)
    info = await provider.create("run_destroyed")
    box = await provider.connect(info)
    assert box._uid is not None
    running = asyncio.create_task(box.run_command("touch started; exec sleep 30", timeout_s=60))
    await _wait_for_file(box._workspace / "started")
    await provider.destroy(info)
    result = await running
    assert result.exit_code != 0 and not result.timed_out
    assert not pids_of(box._uid)
    assert not (sandbox_root / ".uids" / f"uid-{box._uid}").exists()
    with pytest.raises(SandboxError):
        await provider.connect(info)


async def test_a_sandbox_without_a_uid_of_its_own_is_refused(sandbox_root: Path) -> None:
    (sandbox_root / "run_made_by_hand").mkdir()
    with pytest.raises(SandboxError, match="no uid of its own"):
        await LocalSandboxProvider(sandbox_root).connect(SandboxInfo(id="run_made_by_hand"))


async def test_a_root_the_run_uid_cannot_reach_is_refused_not_run_as_root() -> None:
    # Outside the temp dirs (each command gets its own, so a root under them is remounted for
    # it), which rules out the project when it is checked out under /tmp as in CI: root's home.
    with fresh_dir("agentstream-escape-", Path.home()) as base:
        private = base / "private"
        private.mkdir(mode=0o700)
        provider = LocalSandboxProvider(private / "root")
        box = await provider.connect(await provider.create("run_unreachable"))
        with pytest.raises(SandboxError, match="traversable"):
            await box.run_command("id -u", timeout_s=10)
