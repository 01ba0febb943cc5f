"""agentstream.runtime.sandbox.local: workspace lifecycle, path confinement, command limits."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentstream.runtime.sandbox.base import SandboxError
from agentstream.runtime.sandbox.confinement import Isolation, Limits, probe_isolation
from agentstream.runtime.sandbox.local import TEMP_DIR, LocalSandbox, LocalSandboxProvider
from schemas import InvalidIdError, SandboxInfo
from tests.temp_dirs import fresh_dir

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def provider(tmp_path: Path) -> LocalSandboxProvider:
    return LocalSandboxProvider(tmp_path / "root")


@pytest.fixture
async def sandbox(provider: LocalSandboxProvider) -> AsyncIterator[LocalSandbox]:
    info = await provider.create("run_sb")
    try:
        yield await provider.connect(info)
    finally:
        await provider.destroy(info)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Wait until ``pid`` has exited (SIGKILL delivery is asynchronous); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture(scope="module")
async def isolation() -> Isolation | None:
    return await probe_isolation(isolate_network=False, limits=Limits())


@pytest.fixture
def mount_view(isolation: Isolation | None) -> None:
    """Skips where commands cannot get a private mount view (then they are refused)."""
    if isolation is None:
        pytest.skip("no private mount view here: needs root or unprivileged user namespaces")


async def _read_pid(sandbox: LocalSandbox, name: str) -> int:
    return int((await sandbox.read_file(name)).strip())


# Lifecycle


async def test_create_connect_destroy_lifecycle(provider: LocalSandboxProvider) -> None:
    info = await provider.create("run_01ABC")
    assert info == SandboxInfo(id="run_01ABC", backend="local")
    box = await provider.connect(info)
    assert box.info == info
    await box.write_file("a.txt", "hello")
    # A second connection (another process in real life) sees the same workspace.
    assert await (await provider.connect(info)).read_file("a.txt") == "hello"

    await provider.destroy(info)
    await provider.destroy(info)  # destroying one that is gone is not an error
    with pytest.raises(SandboxError):
        await provider.connect(info)


async def test_destroy_for_run_removes_the_runs_sandbox_by_its_id(
    provider: LocalSandboxProvider,
) -> None:
    info = await provider.create("run_lost")
    other = await provider.create("run_kept")

    await provider.destroy_for_run("run_lost")
    await provider.destroy_for_run("run_lost")  # none left: not an error

    with pytest.raises(SandboxError):
        await provider.connect(info)
    await provider.connect(other)
    await provider.destroy(other)


async def test_create_is_idempotent_and_keeps_files(provider: LocalSandboxProvider) -> None:
    info = await provider.create("run_x")
    await (await provider.connect(info)).write_file("keep.txt", "k")
    assert await provider.create("run_x") == info
    assert await (await provider.connect(info)).read_file("keep.txt") == "k"
    await provider.destroy(info)


async def test_connect_to_never_created_sandbox_fails(provider: LocalSandboxProvider) -> None:
    with pytest.raises(SandboxError):
        await provider.connect(SandboxInfo(id="run_missing"))


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".", "..", "a.b", "", "x" * 65])
async def test_invalid_sandbox_ids_are_refused(
    provider: LocalSandboxProvider, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidIdError):
        await provider.create(bad)
    with pytest.raises(InvalidIdError):
        await provider.connect(SandboxInfo(id=bad))
    (tmp_path / "root").mkdir(exist_ok=True)
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("keep")
    with pytest.raises(InvalidIdError):
        await provider.destroy(SandboxInfo(id=bad))
    assert sentinel.read_text() == "keep"


# Files


async def test_write_read_and_list(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("top.txt", "top")
    await sandbox.write_file("dir/sub/deep.py", "print('é')\n")
    await sandbox.write_file("dir/other.txt", "")
    assert await sandbox.read_file("top.txt") == "top"
    assert await sandbox.read_file("dir/sub/deep.py") == "print('é')\n"
    assert await sandbox.read_file("./dir/other.txt") == ""
    assert await sandbox.list_files() == ["dir/other.txt", "dir/sub/deep.py", "top.txt"]
    assert await sandbox.list_files(".") == await sandbox.list_files()
    assert await sandbox.list_files("dir/sub") == ["dir/sub/deep.py"]


async def test_write_overwrites(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("f.txt", "one")
    await sandbox.write_file("f.txt", "two")
    assert await sandbox.read_file("f.txt") == "two"


async def test_missing_file_and_folder_raise(sandbox: LocalSandbox) -> None:
    with pytest.raises(SandboxError):
        await sandbox.read_file("nope.txt")
    with pytest.raises(SandboxError):
        await sandbox.list_files("nope")
    await sandbox.write_file("d/f.txt", "x")
    with pytest.raises(SandboxError):
        await sandbox.read_file("d")  # a folder is not a file


async def test_oversized_write_is_refused(sandbox: LocalSandbox) -> None:
    with pytest.raises(SandboxError):
        await sandbox.write_file("big.txt", "x" * 1_000_001)
    assert await sandbox.list_files() == []


@pytest.mark.parametrize("path", ["/etc/passwd", "/tmp/x", "../x", "a/../../x", "", "dir/../../x"])
async def test_paths_outside_the_workspace_are_refused(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(SandboxError):
        await sandbox.write_file(path, "pwned")
    with pytest.raises(SandboxError):
        await sandbox.read_file(path)


async def test_list_outside_the_workspace_is_refused(sandbox: LocalSandbox) -> None:
    for path in ["/", "..", "../..", "/etc"]:
        with pytest.raises(SandboxError):
            await sandbox.list_files(path)


def _linked_from_the_workspace(sandbox: LocalSandbox, outside: Path, text: str) -> None:
    """Write ``text`` to ``outside`` (a file outside the workspace) and link to it from the
    workspace: ``link.txt`` to the file, ``linkdir`` to its folder."""
    outside.write_text(text)
    os.symlink(outside, sandbox._workspace / "link.txt")
    os.symlink(outside.parent, sandbox._workspace / "linkdir")


async def test_read_through_symlink_pointing_outside_is_refused(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    _linked_from_the_workspace(sandbox, tmp_path / "secret.txt", "TOP SECRET")

    for path in ["link.txt", "linkdir/secret.txt"]:
        with pytest.raises(SandboxError) as info:
            await sandbox.read_file(path)
        assert "TOP SECRET" not in str(info.value)
    with pytest.raises(SandboxError):
        await sandbox.list_files("linkdir")


async def test_write_through_symlink_pointing_outside_is_refused(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    outside = tmp_path / "victim.txt"
    _linked_from_the_workspace(sandbox, outside, "original")
    os.symlink(tmp_path / "not-yet", sandbox._workspace / "dangling.txt")

    for path in ["link.txt", "dangling.txt", "linkdir/new.txt"]:
        with pytest.raises(SandboxError):
            await sandbox.write_file(path, "pwned")
    assert outside.read_text() == "original"
    assert not (tmp_path / "not-yet").exists()
    assert not (tmp_path / "new.txt").exists()


async def test_symlink_inside_the_workspace_is_allowed(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("real.txt", "inside")
    os.symlink(sandbox._workspace / "real.txt", sandbox._workspace / "alias.txt")
    assert await sandbox.read_file("alias.txt") == "inside"


async def test_listing_does_not_descend_into_symlinked_outside_folder(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("x")
    os.symlink(tmp_path / "outside", sandbox._workspace / "linkdir")
    await sandbox.write_file("mine.txt", "m")
    assert await sandbox.list_files() == ["mine.txt"]


# Commands


async def test_command_exit_code_and_stdout(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("echo hello; exit 3", timeout_s=10)
    assert result.exit_code == 3
    assert result.stdout == "hello\n"
    assert result.stderr == ""
    assert not result.timed_out
    assert not result.truncated


async def test_command_stderr_is_captured_separately(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("echo out; echo err >&2", timeout_s=10)
    assert result.exit_code == 0
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


async def test_command_runs_in_the_workspace(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("data.txt", "from file\n")
    result = await sandbox.run_command("cat data.txt; echo made > made.txt; pwd", timeout_s=10)
    assert result.stdout.splitlines() == ["from file", str(sandbox._workspace)]
    assert await sandbox.read_file("made.txt") == "made\n"


async def test_command_gets_no_stdin(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command("cat; echo end", timeout_s=5)
    assert (result.stdout, result.timed_out) == ("end\n", False)


async def test_command_timeout_kills_the_process(sandbox: LocalSandbox) -> None:
    started = time.monotonic()
    result = await sandbox.run_command("echo $$ > pid; exec sleep 30", timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert "timed out" in result.stderr
    assert elapsed < 5
    assert await _wait_gone(await _read_pid(sandbox, "pid"))


async def test_output_limit_truncates_stdout(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(tmp_path, output_limit=1000)
    info = await provider.create("run_limit")
    box = await provider.connect(info)
    try:
        result = await box.run_command("head -c 100000 /dev/zero | tr '\\0' a", timeout_s=10)
        assert result.exit_code == 0
        assert not result.timed_out
        assert len(result.stdout) <= 1000
        assert result.stdout == "a" * len(result.stdout)
        assert len(result.stdout) == 1000
        assert result.truncated

        exact = await box.run_command("head -c 1000 /dev/zero | tr '\\0' b", timeout_s=10)
        assert (len(exact.stdout), exact.truncated) == (1000, False)

        on_stderr = await box.run_command("head -c 5000 /dev/zero | tr '\\0' c >&2", timeout_s=10)
        assert len(on_stderr.stderr) == 1000
        assert on_stderr.truncated
    finally:
        await provider.destroy(info)


async def test_background_child_does_not_outlive_the_command(sandbox: LocalSandbox) -> None:
    result = await sandbox.run_command(
        "sleep 30 >/dev/null 2>&1 & echo $! > bgpid; echo started", timeout_s=10
    )
    assert result.exit_code == 0
    assert result.stdout == "started\n"
    assert not result.timed_out
    assert await _wait_gone(await _read_pid(sandbox, "bgpid"))


async def test_background_child_holding_the_pipes_is_killed_at_timeout(
    sandbox: LocalSandbox,
) -> None:
    # The child keeps stdout open, so the command only ends at its time limit; then the whole
    # process group is killed.
    started = time.monotonic()
    result = await sandbox.run_command("sleep 30 & echo $! > bgpid", timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out
    assert await _wait_gone(await _read_pid(sandbox, "bgpid"))


async def test_command_environment_is_minimal(
    sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTREAM_UNIT_SECRET", "leak")
    command = "echo ${AGENTSTREAM_UNIT_SECRET:-none}; echo $HOME; echo $TMPDIR"
    result = await sandbox.run_command(command, timeout_s=5)
    workspace = sandbox._workspace
    assert result.stdout.splitlines() == ["none", str(workspace), str(workspace / TEMP_DIR)]


# The filesystem a command sees: its workspace is the only place on disk it can write.

# Each tries to leave a file outside the workspace; {name} is unique per attempt.
WRITES_OUTSIDE = {
    "tmp": "echo pwned > /tmp/{name}",
    "var-tmp": "echo pwned > /var/tmp/{name}",
    "dev-shm": "echo pwned > /dev/shm/{name}",
    "symlink-to-root": "ln -s / rootlink && echo pwned > rootlink/tmp/{name}",
    "project": "echo pwned > {project}/{name}",
    "home": "echo pwned > {home}/{name}",
    "sandbox-root": "mkdir {root}/{name}",
}


def _host_path(where: str, name: str, root: Path) -> Path:
    places = {
        "tmp": Path("/tmp"),
        "var-tmp": Path("/var/tmp"),
        "dev-shm": Path("/dev/shm"),
        "symlink-to-root": Path("/tmp"),
        "project": PROJECT,
        "home": Path.home(),
        "sandbox-root": root,
    }
    return places[where] / name


@pytest.mark.parametrize("where", list(WRITES_OUTSIDE))
@pytest.mark.usefixtures("mount_view")
async def test_a_command_writes_nothing_outside_its_workspace(
    sandbox: LocalSandbox, where: str
) -> None:
    name = f"agentstream-escape-{uuid.uuid4().hex}"
    root = sandbox._workspace.parent
    host = _host_path(where, name, root)
    command = WRITES_OUTSIDE[where].format(name=name, project=PROJECT, home=Path.home(), root=root)
    try:
        await sandbox.run_command(command, timeout_s=10)
        assert not host.exists(), f"{command!r} wrote {host} on the host"
    finally:
        if host.is_dir():
            host.rmdir()
        host.unlink(missing_ok=True)


@pytest.mark.usefixtures("mount_view")
async def test_tmp_is_private_to_the_command_and_tmpdir_is_in_the_workspace(
    sandbox: LocalSandbox,
) -> None:
    name = f"agentstream-tmp-{uuid.uuid4().hex}"
    try:
        used = await sandbox.run_command(
            f'echo scratch > /tmp/{name} && cat /tmp/{name} && f=$(mktemp) && echo kept > "$f" '
            '&& echo "$f"',
            timeout_s=10,
        )
        assert used.exit_code == 0, used.stderr
        scratch, kept = used.stdout.splitlines()
        assert scratch == "scratch", "/tmp is writable"
        assert not await asyncio.to_thread(Path("/tmp", name).exists), "nor the host's /tmp"
        assert Path(kept).parent == sandbox._workspace / TEMP_DIR
        assert await asyncio.to_thread(Path(kept).read_text) == "kept\n"
        again = await sandbox.run_command(f'cat "{kept}"; ls -a /tmp', timeout_s=10)
        assert again.stdout.startswith("kept\n"), "TMPDIR lasts as long as the run"
        assert name not in again.stdout, "/tmp lasts one command"
        assert await sandbox.list_files() == [], "the run's temp files are not its output"
    finally:
        await asyncio.to_thread(Path("/tmp", name).unlink, missing_ok=True)


@pytest.mark.usefixtures("mount_view")
async def test_another_run_sees_nothing_of_this_run(provider: LocalSandboxProvider) -> None:
    name = f"agentstream-shared-{uuid.uuid4().hex}"
    mine = await provider.connect(await provider.create("run_mine"))
    other = await provider.connect(await provider.create("run_other"))
    try:
        wrote = await mine.run_command(
            f"echo secret > /tmp/{name}; echo secret > mine.txt; chmod 644 mine.txt",
            timeout_s=10,
        )
        assert wrote.exit_code == 0, wrote.stderr
        looked = await other.run_command(
            f"cat /tmp/{name}; cat {mine._workspace}/mine.txt", timeout_s=10
        )
        assert "secret" not in looked.stdout
        listed = await other.run_command(f"ls -a {other._workspace.parent}", timeout_s=10)
        assert listed.stdout.split() == [".", "..", "run_other"], "no other workspace is visible"
    finally:
        await asyncio.to_thread(Path("/tmp", name).unlink, missing_ok=True)
        await provider.destroy(mine.info)
        await provider.destroy(other.info)


async def _no_mount_view(*, isolate_network: bool, limits: Limits) -> Isolation | None:
    return None


async def test_commands_are_refused_where_no_mount_view_can_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentstream.runtime.sandbox.local.probe_isolation", _no_mount_view)
    provider = LocalSandboxProvider(tmp_path / "root")
    box = await provider.connect(await provider.create("run_refused"))
    for _ in range(2):  # the refusal stands; the machine is not probed again
        with pytest.raises(SandboxError, match="SANDBOX_ALLOW_UNCONFINED"):
            await box.run_command("echo hello", timeout_s=10)
    await box.write_file("still.txt", "file tools work")
    assert await box.read_file("still.txt") == "file tools work"


@pytest.fixture
def traversable_root() -> Iterator[Path]:
    """A sandbox root a run's uid can reach without a mount view (pytest's tmp is 0700)."""
    with fresh_dir("agentstream-unconfined-") as root:
        yield root


async def test_unconfined_commands_run_only_when_allowed(
    traversable_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentstream.runtime.sandbox.local.probe_isolation", _no_mount_view)
    provider = LocalSandboxProvider(traversable_root, allow_unconfined=True)
    box = await provider.connect(await provider.create("run_unconfined"))
    result = await box.run_command("echo hello; pwd", timeout_s=10)
    assert result.stdout.splitlines() == ["hello", str(box._workspace)]
    await provider.destroy(box.info)
