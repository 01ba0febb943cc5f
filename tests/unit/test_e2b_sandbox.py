"""agentstream.runtime.sandbox.e2b, tested at the SDK boundary.

``FakeE2B`` stands in for ``e2b.AsyncSandbox``: the same method names and signatures (checked
against the real SDK below), an in-memory filesystem, a scripted command runner that raises the
real ``e2b`` exceptions, and a record of every call. A few tests also drive the real SDK against a
local HTTP server playing the E2B API, to pin down what the stand-in cannot (no SDK retries,
a 404 on kill).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import posixpath
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import e2b
import httpx
import pytest
from e2b.sandbox_async.commands.command import Commands
from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle
from e2b.sandbox_async.filesystem.filesystem import Filesystem

from agentstream.runtime.sandbox.base import CommandResult, SandboxBusy, SandboxError
from agentstream.runtime.sandbox.e2b import DEFAULT_WORKSPACE, E2BSandbox, E2BSandboxProvider
from schemas import InvalidIdError, SandboxInfo

API_KEY = "e2b_0123456789abcdef_secret"
WS = DEFAULT_WORKSPACE

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


# The stand-in


@dataclass
class Script:
    """What a fake command does: its output chunks, then an exit code or an SDK failure."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exit_code: int = 0
    raises: Exception | None = None


def _entry(path: str, kind: e2b.FileType, size: int = 0) -> e2b.EntryInfo:
    return e2b.EntryInfo(
        name=posixpath.basename(path),
        type=kind,
        path=path,
        size=size,
        mode=0o644,
        permissions="rw-r--r--",
        owner="user",
        group="user",
        modified_time=datetime.now(UTC),
    )


class FakeHandle:
    """Mimics ``e2b.AsyncCommandHandle``: ``pid``, ``wait()`` and ``kill()``."""

    def __init__(
        self,
        owner: FakeE2B,
        script: Script,
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
        retain_output: bool,
    ) -> None:
        self._owner = owner
        self._script = script
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._retain = retain_output
        self.pid = 4242

    async def wait(self) -> e2b.CommandResult[str | None]:
        self._owner._record("handle.wait")
        # Like the SDK, output reaches the callbacks before wait() returns or raises.
        for chunk in self._script.stdout:
            if self._on_stdout is not None:
                self._on_stdout(chunk)
        for chunk in self._script.stderr:
            if self._on_stderr is not None:
                self._on_stderr(chunk)
        if self._script.raises is not None:
            raise self._script.raises
        out = "".join(self._script.stdout) if self._retain else None
        err = "".join(self._script.stderr) if self._retain else None
        if self._script.exit_code != 0:
            raise e2b.CommandExitException(
                stdout=out, stderr=err, exit_code=self._script.exit_code, error=None
            )
        return e2b.CommandResult[str | None](stdout=out, stderr=err, exit_code=0, error=None)

    async def kill(self) -> bool:
        self._owner._record("handle.kill")
        return True


class FakeCommands:
    """Mimics ``AsyncSandbox.commands`` (``e2b...Commands``)."""

    def __init__(self, owner: FakeE2B) -> None:
        self._owner = owner

    async def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        stdin: bool | None = None,
        timeout: float | None = 60,
        request_timeout: float | None = None,
        *,
        retain_output: bool = True,
    ) -> Any:
        self._owner._record(
            "commands.run",
            cmd,
            background=background,
            cwd=cwd,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            timeout=timeout,
            retain_output=retain_output,
        )
        script = type(self._owner).scripts.get(cmd, Script())
        handle = FakeHandle(self._owner, script, on_stdout, on_stderr, retain_output)
        return handle if background else await handle.wait()


class FakeFiles:
    """Mimics ``AsyncSandbox.files`` (``e2b...Filesystem``) over a dict of absolute paths."""

    def __init__(self, owner: FakeE2B) -> None:
        self._owner = owner
        self.data: dict[str, bytes] = {}
        self.dirs: set[str] = {"/home/user"}

    def _is_dir(self, path: str) -> bool:
        return path in self.dirs or any(p.startswith(path + "/") for p in self.data)

    async def write(
        self,
        path: str,
        data: str | bytes,
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> e2b.WriteInfo:
        self._owner._record("files.write", path, data)
        self.data[path] = data.encode() if isinstance(data, str) else bytes(data)
        return e2b.WriteInfo(name=posixpath.basename(path), type=e2b.FileType.FILE, path=path)

    async def read(
        self,
        path: str,
        format: Literal["text", "bytes"] = "text",
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> str | bytearray:
        self._owner._record("files.read", path, format=format)
        if path not in self.data:
            raise e2b.FileNotFoundException(f"{path}: no such file or directory")
        return bytearray(self.data[path]) if format == "bytes" else self.data[path].decode()

    async def get_info(
        self, path: str, user: str | None = None, request_timeout: float | None = None
    ) -> e2b.EntryInfo:
        self._owner._record("files.get_info", path)
        if path in self.data:
            return _entry(path, e2b.FileType.FILE, len(self.data[path]))
        if self._is_dir(path):
            return _entry(path, e2b.FileType.DIR)
        raise e2b.FileNotFoundException(f"{path}: no such file or directory")

    async def list(
        self,
        path: str,
        depth: int | None = 1,
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> list[e2b.EntryInfo]:
        self._owner._record("files.list", path, depth=depth)
        if not self._is_dir(path):
            raise e2b.FileNotFoundException(f"{path}: no such file or directory")
        entries: dict[str, e2b.EntryInfo] = {}
        for file, content in self.data.items():
            if not file.startswith(path + "/"):
                continue
            parts = file[len(path) + 1 :].split("/")
            for level in range(1, min(len(parts), depth or len(parts)) + 1):
                sub = posixpath.join(path, *parts[:level])
                is_file = level == len(parts)
                kind = e2b.FileType.FILE if is_file else e2b.FileType.DIR
                entries[sub] = _entry(sub, kind, len(content) if is_file else 0)
        return list(entries.values())

    async def make_dir(
        self, path: str, user: str | None = None, request_timeout: float | None = None
    ) -> bool:
        self._owner._record("files.make_dir", path)
        created = not self._is_dir(path)
        self.dirs.add(path)
        return created


class FakePaginator:
    """Mimics ``e2b.AsyncSandboxPaginator``: pages fetched one ``next_items`` at a time."""

    def __init__(self, pages: list[list[FakeE2B]]) -> None:
        self._pages = pages

    @property
    def has_next(self) -> bool:
        return bool(self._pages)

    async def next_items(self) -> list[FakeE2B]:
        return self._pages.pop(0)


class FakeE2B:
    """Mimics the parts of ``e2b.AsyncSandbox`` the E2B backend uses.

    Class-level state is the "cloud": every test gets a fresh subclass (see ``sdk``).
    """

    calls: ClassVar[list[Call]] = []
    sandboxes: ClassVar[dict[str, FakeE2B]] = {}
    scripts: ClassVar[dict[str, Script]] = {}
    # Call name (e.g. "create", "files.read") -> exception the next such call raises.
    failures: ClassVar[dict[str, Exception]] = {}
    # Kill of an unknown ID: the SDK returns False, but an older API/SDK may raise NotFound.
    kill_missing_raises: ClassVar[bool] = False

    def __init__(self, sandbox_id: str, metadata: dict[str, str] | None = None) -> None:
        self._id = sandbox_id
        self.metadata = metadata or {}
        self.files = FakeFiles(self)
        self.commands = FakeCommands(self)

    @property
    def sandbox_id(self) -> str:
        return self._id

    @classmethod
    def _record_cls(cls, name: str, *args: Any, **kwargs: Any) -> None:
        cls.calls.append((name, args, kwargs))
        if name in cls.failures:
            raise cls.failures.pop(name)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        type(self)._record_cls(name, *args, **kwargs)

    @classmethod
    async def create(
        cls,
        template: str | None = None,
        timeout: int | None = None,
        metadata: dict[str, str] | None = None,
        **opts: Any,
    ) -> FakeE2B:
        cls._record_cls("create", template=template, timeout=timeout, metadata=metadata, **opts)
        sandbox = cls(f"isbx{len(cls.sandboxes) + 1:04d}", metadata)
        cls.sandboxes[sandbox.sandbox_id] = sandbox
        return sandbox

    @classmethod
    async def connect(cls, sandbox_id: str, timeout: int | None = None, **opts: Any) -> FakeE2B:
        cls._record_cls("connect", sandbox_id, timeout=timeout, **opts)
        if sandbox_id not in cls.sandboxes:
            raise e2b.SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return cls.sandboxes[sandbox_id]

    @classmethod
    async def kill(cls, sandbox_id: str, **opts: Any) -> bool:
        cls._record_cls("kill", sandbox_id, **opts)
        if cls.sandboxes.pop(sandbox_id, None) is not None:
            return True
        if cls.kill_missing_raises:
            raise e2b.SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return False

    @classmethod
    def list(cls, query: e2b.SandboxQuery | None = None, **opts: Any) -> FakePaginator:
        """The sandboxes whose metadata holds the query's, one page per sandbox."""
        cls._record_cls("list", query=query, **opts)
        wanted = (query.metadata if query is not None else None) or {}
        return FakePaginator(
            [
                [sandbox]
                for sandbox in cls.sandboxes.values()
                if wanted.items() <= sandbox.metadata.items()
            ]
        )

    def get_host(self, port: int) -> str:
        self._record("get_host", port)
        return f"{port}-{self._id}.e2b.app"


@pytest.fixture
def sdk() -> type[FakeE2B]:
    """A fresh stand-in class, so the class-level cloud state does not leak between tests."""
    return type(
        "FakeE2B", (FakeE2B,), {"calls": [], "sandboxes": {}, "scripts": {}, "failures": {}}
    )


@pytest.fixture
def provider(sdk: type[FakeE2B]) -> E2BSandboxProvider:
    return E2BSandboxProvider(API_KEY, sdk=sdk)


@pytest.fixture
async def connected(provider: E2BSandboxProvider, sdk: type[FakeE2B]) -> tuple[E2BSandbox, FakeE2B]:
    """A sandbox connected through the provider, and the stand-in behind it; calls cleared."""
    info = await provider.create("run_1")
    sandbox = await provider.connect(info)
    sdk.calls.clear()
    return sandbox, sdk.sandboxes[info.id]


def _names(sdk: type[FakeE2B]) -> list[str]:
    return [name for name, _, _ in sdk.calls]


# Provider: create, connect, destroy


async def test_create_passes_template_key_timeout_and_metadata(sdk: type[FakeE2B]) -> None:
    provider = E2BSandboxProvider(API_KEY, template="nextjs-app", timeout_s=900, sdk=sdk)

    info = await provider.create("run_01ABC")

    name, args, kwargs = sdk.calls[0]
    assert (name, args) == ("create", ())
    assert kwargs == {
        "template": "nextjs-app",
        "timeout": 900,
        "metadata": {"run": "run_01ABC"},
        "api_key": API_KEY,
        "retries": 0,
    }
    sandbox_id = next(iter(sdk.sandboxes))
    assert info == SandboxInfo(
        id=sandbox_id, backend="e2b", url=f"https://3000-{sandbox_id}.e2b.app"
    )
    # The workspace exists before the agent's first command runs in it.
    assert ("files.make_dir", (WS,), {}) in sdk.calls
    assert ("get_host", (3000,), {}) in sdk.calls


async def test_create_defaults_to_the_base_template(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    await provider.create("run_1")
    assert sdk.calls[0][2]["template"] == "base"
    assert sdk.calls[0][2]["timeout"] == 1800


async def test_create_without_preview_port_has_no_url(sdk: type[FakeE2B]) -> None:
    provider = E2BSandboxProvider(API_KEY, preview_port=None, sdk=sdk)
    info = await provider.create("run_1")
    assert info.url is None
    assert "get_host" not in _names(sdk)


async def test_create_uses_another_preview_port(sdk: type[FakeE2B]) -> None:
    info = await E2BSandboxProvider(API_KEY, preview_port=8080, sdk=sdk).create("run_1")
    assert info.url == f"https://8080-{info.id}.e2b.app"


async def test_create_refuses_an_unsafe_run_id(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    with pytest.raises(InvalidIdError):
        await provider.create("../run")
    assert sdk.calls == []


async def test_create_kills_the_sandbox_when_its_setup_fails(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    sdk.failures["files.make_dir"] = e2b.SandboxException("disk full")

    with pytest.raises(SandboxError, match="disk full"):
        await provider.create("run_1")

    kills = [call for call in sdk.calls if call[0] == "kill"]
    assert kills == [("kill", ("isbx0001",), {"api_key": API_KEY, "retries": 0})]
    assert sdk.sandboxes == {}


async def test_create_at_the_concurrency_limit_is_busy_not_failed(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    # E2B answers 429 when the team's concurrent sandboxes are all in use: the worker waits.
    sdk.failures["create"] = e2b.RateLimitException(f"429: Rate limit exceeded {API_KEY}")

    with pytest.raises(SandboxBusy) as refused:
        await provider.create("run_1")

    assert API_KEY not in str(refused.value)
    assert sdk.sandboxes == {}
    assert (await provider.create("run_1")).id == "isbx0001", "the next try creates it"


async def test_provider_requires_an_api_key() -> None:
    with pytest.raises(ValueError, match="API key"):
        E2BSandboxProvider("")


async def test_connect_reconnects_by_id_with_the_api_key(sdk: type[FakeE2B]) -> None:
    info = await E2BSandboxProvider(API_KEY, sdk=sdk).create("run_1")
    # The agent is another process: a provider of its own, only the SandboxInfo in common.
    agent_side = E2BSandboxProvider(API_KEY, timeout_s=600, sdk=sdk)
    sdk.calls.clear()

    sandbox = await agent_side.connect(info)

    options = {"timeout": 600, "api_key": API_KEY, "retries": 0}
    assert sdk.calls == [("connect", (info.id,), options)]
    assert isinstance(sandbox, E2BSandbox)
    assert sandbox.info == info


async def test_connect_to_a_missing_sandbox_is_a_sandbox_error(
    provider: E2BSandboxProvider,
) -> None:
    with pytest.raises(SandboxError, match="isbx9999 does not exist"):
        await provider.connect(SandboxInfo(id="isbx9999", backend="e2b"))


@pytest.mark.parametrize(
    "info",
    [SandboxInfo(id="run_1", backend="local"), SandboxInfo(id="a/../b", backend="e2b")],
    ids=["local-backend", "unsafe-id"],
)
async def test_connect_and_destroy_refuse_foreign_infos_without_sdk_calls(
    provider: E2BSandboxProvider, sdk: type[FakeE2B], info: SandboxInfo
) -> None:
    with pytest.raises((SandboxError, InvalidIdError)):
        await provider.connect(info)
    with pytest.raises((SandboxError, InvalidIdError)):
        await provider.destroy(info)
    assert sdk.calls == []


async def test_destroy_kills_by_id_and_twice_is_fine(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    info = await provider.create("run_1")
    sdk.calls.clear()

    await provider.destroy(info)
    await provider.destroy(info)  # The SDK answers False: already gone.

    kill = ("kill", (info.id,), {"api_key": API_KEY, "retries": 0})
    assert sdk.calls == [kill, kill]
    assert sdk.sandboxes == {}


async def test_destroy_of_a_gone_sandbox_that_raises_not_found_is_fine(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    sdk.kill_missing_raises = True
    await provider.destroy(SandboxInfo(id="isbx0404", backend="e2b"))
    assert _names(sdk) == ["kill"]


async def test_destroy_for_run_kills_the_runs_sandboxes_found_by_metadata(
    provider: E2BSandboxProvider, sdk: type[FakeE2B]
) -> None:
    # Two for the run: a creation retried after its result was lost made a second one.
    mine = [await provider.create("run_1"), await provider.create("run_1")]
    other = await provider.create("run_2")
    sdk.calls.clear()

    await provider.destroy_for_run("run_1")

    assert _names(sdk) == ["list", "kill", "kill"]
    assert sdk.calls[0][2]["query"].metadata == {"run": "run_1"}
    assert {call[1][0] for call in sdk.calls[1:]} == {info.id for info in mine}
    assert set(sdk.sandboxes) == {other.id}
    await provider.destroy_for_run("run_1")  # None left: nothing to do.
    assert set(sdk.sandboxes) == {other.id}


# Files


async def test_write_read_and_list_go_to_workspace_paths(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]
) -> None:
    sandbox, fake = connected

    await sandbox.write_file("src/app/page.tsx", "export default 1\n")
    await sandbox.write_file("package.json", "{}")
    await sandbox.write_file("a/../README.md", "hi")  # Stays inside: allowed, normalised.

    assert sdk.calls[0] == ("files.write", (f"{WS}/src/app/page.tsx", "export default 1\n"), {})
    assert set(fake.files.data) == {
        f"{WS}/src/app/page.tsx",
        f"{WS}/package.json",
        f"{WS}/README.md",
    }
    assert await sandbox.read_file("src/app/page.tsx") == "export default 1\n"
    assert ("files.read", (f"{WS}/src/app/page.tsx",), {"format": "bytes"}) in sdk.calls
    assert await sandbox.list_files() == ["README.md", "package.json", "src/app/page.tsx"]
    assert await sandbox.list_files("src") == ["src/app/page.tsx"]
    assert [c for c in sdk.calls if c[0] == "files.list"] == [
        ("files.list", (WS,), {"depth": 16}),
        ("files.list", (f"{WS}/src",), {"depth": 16}),
    ]


async def test_list_leaves_out_dependency_and_build_trees(
    connected: tuple[E2BSandbox, FakeE2B],
) -> None:
    sandbox, _ = connected
    for path in ["node_modules/react/index.js", ".git/HEAD", ".next/cache/x", "app/page.tsx"]:
        await sandbox.write_file(path, "x")
    assert await sandbox.list_files() == ["app/page.tsx"]
    # Asked for explicitly, they are listed.
    assert await sandbox.list_files("node_modules/react") == ["node_modules/react/index.js"]


async def test_list_is_sorted_and_capped(connected: tuple[E2BSandbox, FakeE2B]) -> None:
    sandbox, fake = connected
    for i in range(510):
        fake.files.data[f"{WS}/f{i:04d}.txt"] = b""
    listed = await sandbox.list_files()
    assert listed == sorted(listed)
    assert len(listed) == 500


async def test_custom_workspace(sdk: type[FakeE2B]) -> None:
    provider = E2BSandboxProvider(API_KEY, workspace="/home/user/app/", sdk=sdk)
    sandbox = await provider.connect(await provider.create("run_1"))
    await sandbox.write_file("page.tsx", "x")
    assert ("files.make_dir", ("/home/user/app",), {}) in sdk.calls
    assert ("files.write", ("/home/user/app/page.tsx", "x"), {}) in sdk.calls


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../escape", "a/../../escape", "..", "", "a\0b", "/home/user/workspace"]
)
async def test_absolute_and_escaping_paths_are_refused_without_sdk_calls(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B], path: str
) -> None:
    sandbox, _ = connected
    with pytest.raises(SandboxError, match="workspace"):
        await sandbox.write_file(path, "x")
    with pytest.raises(SandboxError, match="workspace"):
        await sandbox.read_file(path)
    if path:  # "" lists the workspace itself, like the local backend.
        with pytest.raises(SandboxError, match="workspace"):
            await sandbox.list_files(path)
    assert sdk.calls == []


async def test_missing_files_and_folders(connected: tuple[E2BSandbox, FakeE2B]) -> None:
    sandbox, _ = connected
    await sandbox.write_file("dir/file.txt", "x")
    with pytest.raises(SandboxError, match=r"no such file: 'nope\.txt'"):
        await sandbox.read_file("nope.txt")
    with pytest.raises(SandboxError, match=r"no such file: 'dir'"):
        await sandbox.read_file("dir")
    with pytest.raises(SandboxError, match=r"no such folder: 'nope'"):
        await sandbox.list_files("nope")


async def test_file_size_limits(connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]) -> None:
    sandbox, fake = connected
    with pytest.raises(SandboxError, match="larger than"):
        await sandbox.write_file("big.txt", "x" * 1_000_001)
    assert sdk.calls == []

    fake.files.data[f"{WS}/big.bin"] = b"x" * 1_000_001
    with pytest.raises(SandboxError, match="larger than"):
        await sandbox.read_file("big.bin")
    # Refused from its size alone: never downloaded.
    assert "files.read" not in _names(sdk)


async def test_read_replaces_invalid_utf8(connected: tuple[E2BSandbox, FakeE2B]) -> None:
    sandbox, fake = connected
    fake.files.data[f"{WS}/bin"] = b"ok\xff"
    assert await sandbox.read_file("bin") == "ok\ufffd"


# Commands


async def test_run_command_success(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]
) -> None:
    sandbox, _ = connected
    sdk.scripts["echo hi"] = Script(stdout=["hi\n"])

    result = await sandbox.run_command("echo hi", timeout_s=30)

    assert result == CommandResult(exit_code=0, stdout="hi\n", stderr="")
    name, args, kwargs = sdk.calls[0]
    assert (name, args) == ("commands.run", ("echo hi",))
    assert kwargs["cwd"] == WS
    assert kwargs["timeout"] == 30
    assert kwargs["background"] is True
    assert kwargs["retain_output"] is False


async def test_run_command_non_zero_exit_is_a_result(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]
) -> None:
    sandbox, _ = connected
    sdk.scripts["npm test"] = Script(stdout=["1 failing\n"], stderr=["boom\n"], exit_code=2)

    result = await sandbox.run_command("npm test", timeout_s=30)

    assert result == CommandResult(exit_code=2, stdout="1 failing\n", stderr="boom\n")


async def test_run_command_timeout(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]
) -> None:
    sandbox, _ = connected
    # What the SDK raises when the command's stream outlives ``timeout`` (DEADLINE_EXCEEDED).
    sdk.scripts["sleep 99"] = Script(
        stdout=["started\n"], raises=e2b.TimeoutException("deadline_exceeded: timeout")
    )

    result = await sandbox.run_command("sleep 99", timeout_s=2)

    assert result.timed_out is True
    assert result.exit_code == -1
    assert result.stdout == "started\n"
    assert "timed out after 2s" in result.stderr
    # The process would otherwise keep running in the VM.
    assert _names(sdk)[-1] == "handle.kill"


async def test_run_command_caps_long_output(sdk: type[FakeE2B]) -> None:
    provider = E2BSandboxProvider(API_KEY, command_output_limit=100, sdk=sdk)
    sandbox = await provider.connect(await provider.create("run_1"))
    sdk.scripts["yes"] = Script(stdout=["y\n" * 30] * 10, stderr=["e" * 150])

    result = await sandbox.run_command("yes", timeout_s=5)

    assert result.truncated is True
    assert result.stdout == ("y\n" * 50)
    assert result.stderr == "e" * 100
    assert result.exit_code == 0


async def test_output_exactly_at_the_limit_is_not_truncated(sdk: type[FakeE2B]) -> None:
    provider = E2BSandboxProvider(API_KEY, command_output_limit=10, sdk=sdk)
    sandbox = await provider.connect(await provider.create("run_1"))
    sdk.scripts["x"] = Script(stdout=["12345", "67890"])
    result = await sandbox.run_command("x", timeout_s=5)
    assert (result.stdout, result.truncated) == ("1234567890", False)


@pytest.mark.parametrize(
    "exc",
    [
        e2b.SandboxNotRunningException("sandbox was not found"),
        e2b.SandboxUnreachableException("port is not open"),
        e2b.SandboxException("unknown: stream broke"),
    ],
    ids=["not-running", "unreachable", "other"],
)
async def test_run_command_on_a_broken_sandbox_is_an_error_not_a_timeout(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B], exc: Exception
) -> None:
    sandbox, _ = connected
    sdk.scripts["ls"] = Script(raises=exc)
    with pytest.raises(SandboxError, match=type(exc).__name__):
        await sandbox.run_command("ls", timeout_s=5)


async def test_run_command_needs_a_positive_timeout(
    connected: tuple[E2BSandbox, FakeE2B], sdk: type[FakeE2B]
) -> None:
    sandbox, _ = connected
    with pytest.raises(SandboxError, match="positive"):
        await sandbox.run_command("ls", timeout_s=0)
    assert sdk.calls == []


# SDK errors become SandboxError, without the API key


def _leaky_errors() -> list[Exception]:
    """SDK failures whose messages carry the key (the worst case the scrubbing must handle)."""
    return [
        e2b.AuthenticationException(f"Invalid API key {API_KEY}"),
        e2b.NotEnoughSpaceException(f"disk full for {API_KEY}"),
        httpx.ConnectError(f"cannot reach api.e2b.app with {API_KEY}"),
        e2b.ServiceBusyException(f"503 {API_KEY}"),
    ]


async def _run_op(op: str, provider: E2BSandboxProvider, sdk: type[FakeE2B]) -> None:
    if op == "create":
        await provider.create("run_1")
        return
    info = SandboxInfo(id="isbx0001", backend="e2b")
    if op == "connect":
        await provider.connect(info)
    elif op == "kill":
        await provider.destroy(info)
    else:
        sandbox = E2BSandbox(info, sdk("isbx0001"), secret=API_KEY)
        if op == "files.write":
            await sandbox.write_file("a.txt", "x")
        elif op == "files.get_info":
            await sandbox.read_file("a.txt")
        elif op == "files.list":
            await sandbox.list_files()
        elif op in ("commands.run", "handle.wait"):
            await sandbox.run_command("ls", timeout_s=5)


@pytest.mark.parametrize(
    "op",
    [
        "create",
        "connect",
        "kill",
        "files.write",
        "files.get_info",
        "files.list",
        "commands.run",
        "handle.wait",
    ],
)
@pytest.mark.parametrize("exc", _leaky_errors(), ids=lambda e: type(e).__name__)
async def test_sdk_errors_become_sandbox_errors_without_the_api_key(
    provider: E2BSandboxProvider, sdk: type[FakeE2B], op: str, exc: Exception
) -> None:
    sdk.failures[op] = exc

    with pytest.raises(SandboxError) as caught:
        await _run_op(op, provider, sdk)

    message = str(caught.value)
    assert API_KEY not in message
    assert type(exc).__name__ in message
    assert "***" in message
    # Temporal records an exception's cause chain: the SDK's original must not ride along.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


# The real SDK, against a local server playing the E2B API


@dataclass
class FakeApi:
    """Answers every request with one status; records (method, path, X-API-Key)."""

    status: int
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.split("\r\n")
        method, path, _ = request_line.split(" ")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in header_lines if ":" in line)
        }
        if length := int(headers.get("content-length", "0")):
            await reader.readexactly(length)
        self.requests.append((method, path, headers.get("x-api-key")))
        body = json.dumps({"code": self.status, "message": f"status {self.status}"}).encode()
        writer.write(
            f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def fake_api(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeApi]:
    api = FakeApi(status=request.param)
    server = await asyncio.start_server(api.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("E2B_API_URL", f"http://127.0.0.1:{port}")
    # Plain-text HTTP/1.1: the default HTTP/2 needs TLS here.
    monkeypatch.setenv("E2B_HTTP_VERSION", "1.1")
    try:
        yield api
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("fake_api", [503, 429], indirect=True)
async def test_real_sdk_does_not_retry_and_hides_the_key(fake_api: FakeApi) -> None:
    provider = E2BSandboxProvider(API_KEY)  # The real e2b.AsyncSandbox.

    with pytest.raises(SandboxError) as caught:
        await provider.create("run_1")

    assert fake_api.requests == [("POST", "/v2/sandboxes", API_KEY)]  # Once: Temporal retries.
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize("fake_api", [404], indirect=True)
async def test_real_sdk_destroy_of_a_gone_sandbox_is_fine(fake_api: FakeApi) -> None:
    await E2BSandboxProvider(API_KEY).destroy(SandboxInfo(id="isbxgone", backend="e2b"))
    assert fake_api.requests == [("DELETE", "/sandboxes/isbxgone", API_KEY)]


# The stand-in must not drift from the SDK


def _real_counterparts() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """Stand-in callable -> the real SDK callable a call of the same name runs."""
    return {
        "create": (FakeE2B.create, e2b.AsyncSandbox.create),
        # Called on the class, ``connect``/``kill`` dispatch to these classmethods (the
        # instance-method signature is what ``inspect`` shows for the public name).
        "connect": (FakeE2B.connect, e2b.AsyncSandbox._cls_connect_sandbox),
        "kill": (FakeE2B.kill, e2b.AsyncSandbox._cls_kill),
        "get_host": (FakeE2B.get_host, e2b.AsyncSandbox.get_host),
        "files.write": (FakeFiles.write, Filesystem.write),
        "files.read": (FakeFiles.read, Filesystem.read),
        "files.get_info": (FakeFiles.get_info, Filesystem.get_info),
        "files.list": (FakeFiles.list, Filesystem.list),
        "files.make_dir": (FakeFiles.make_dir, Filesystem.make_dir),
        "commands.run": (FakeCommands.run, Commands.run),
        "handle.wait": (FakeHandle.wait, AsyncCommandHandle.wait),
        "handle.kill": (FakeHandle.kill, AsyncCommandHandle.kill),
    }


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())
    # Unbound functions start with self; bound classmethods do not.
    return params[1:] if params and params[0].name in ("self", "cls") else params


@pytest.mark.parametrize("name", list(_real_counterparts()))
def test_stand_in_signatures_match_the_sdk(name: str) -> None:
    fake, real = _real_counterparts()[name]
    fake_params, real_params = _params(fake), _params(real)
    real_by_name = {p.name: p for p in real_params}
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

    for param in fake_params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            assert any(p.kind is param.kind for p in real_params), f"{name}: no **kwargs"
            continue
        assert param.name in real_by_name, f"{name}: the SDK has no parameter {param.name!r}"
        assert real_by_name[param.name].kind is param.kind, f"{name}.{param.name}: kind differs"
    # Positional parameters in the same order, so a positional call means the same thing.
    fake_positional = [p.name for p in fake_params if p.kind in positional]
    real_positional = [p.name for p in real_params if p.kind in positional]
    assert real_positional[: len(fake_positional)] == fake_positional


def test_real_sdk_has_every_attribute_the_stand_in_imitates() -> None:
    for attribute in ("create", "connect", "kill", "get_host", "sandbox_id", "files", "commands"):
        assert hasattr(e2b.AsyncSandbox, attribute), attribute
    for attribute in ("write", "read", "get_info", "list", "make_dir"):
        assert hasattr(Filesystem, attribute), attribute
    assert hasattr(Commands, "run")
    for attribute in ("pid", "wait", "kill"):
        assert hasattr(AsyncCommandHandle, attribute), attribute
    for attribute in ("name", "type", "path", "size"):
        assert attribute in e2b.EntryInfo.__dataclass_fields__, attribute
    for attribute in ("sandbox_id", "files", "commands"):
        assert isinstance(inspect.getattr_static(e2b.AsyncSandbox, attribute), property)
    # The keyword options the backend passes through ``**opts``.
    assert {"api_key", "retries"} <= set(e2b.ApiParams.__annotations__)
    # Timeouts of a gone sandbox are TimeoutException subclasses: the backend relies on the order.
    assert issubclass(e2b.SandboxNotRunningException, e2b.TimeoutException)
    assert issubclass(e2b.SandboxNotFoundException, e2b.NotFoundException)


async def test_every_recorded_call_binds_to_the_real_signature(sdk: type[FakeE2B]) -> None:
    """A whole session through the backend: each SDK call it makes is valid for the real SDK."""
    provider = E2BSandboxProvider(API_KEY, sdk=sdk)
    info = await provider.create("run_1")
    sandbox = await provider.connect(info)
    await sandbox.write_file("a.txt", "x")
    await sandbox.read_file("a.txt")
    await sandbox.list_files()
    sdk.scripts["slow"] = Script(raises=e2b.TimeoutException("deadline_exceeded"))
    await sandbox.run_command("ls", timeout_s=5)
    await sandbox.run_command("slow", timeout_s=1)
    await provider.destroy(info)

    counterparts = _real_counterparts()
    assert {name for name, _, _ in sdk.calls} == set(counterparts)
    api_params = set(e2b.ApiParams.__annotations__)
    for name, args, kwargs in sdk.calls:
        real = counterparts[name][1]
        signature = inspect.signature(real)
        bound_self = () if inspect.ismethod(real) else (object(),)
        bound = signature.bind(*bound_self, *args, **kwargs)
        extra: dict[str, Any] = next(
            (
                bound.arguments[p.name]
                for p in signature.parameters.values()
                if p.kind is inspect.Parameter.VAR_KEYWORD
            ),
            {},
        )
        assert set(extra) <= api_params, f"{name}: unknown options {set(extra) - api_params}"


@pytest.fixture(autouse=True)
def _no_real_e2b_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The backend must never fall back to a key from the environment.
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    yield
