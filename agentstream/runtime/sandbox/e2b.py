"""The E2B sandbox: each run gets its own E2B cloud microVM to write files and run commands in.

E2B (https://e2b.dev) is the hardened backend the local sandbox defers to: the agent's code runs in
a disposable VM, not on the worker's machine, and a port of it (e.g. a Next.js dev server started
from a template that ships one) is reachable at a public preview URL. It is selected with
``SANDBOX=e2b`` and authenticated with ``E2B_API_KEY``.

The worker creates and destroys the sandbox; the agent, another process, reconnects to it by the
ID carried in :class:`~schemas.SandboxInfo`. Every SDK call goes through the ``sdk`` class given to
:class:`E2BSandboxProvider`, so tests can substitute an in-memory stand-in. Nothing here retries:
the SDK's own control-plane retries are turned off because Temporal owns retries, and SDK errors
become :class:`SandboxError` with messages that never contain the API key.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Iterator
from typing import Any

from e2b import (
    AsyncSandbox,
    CommandExitException,
    FileNotFoundException,
    FileType,
    NotFoundException,
    RateLimitException,
    SandboxNotRunningException,
    SandboxQuery,
    SandboxUnreachableException,
    TimeoutException,
)

from agentstream.runtime.sandbox.base import CommandResult, SandboxBusy, SandboxError
from schemas import SandboxInfo, require_id

__all__ = ["DEFAULT_WORKSPACE", "E2BSandbox", "E2BSandboxProvider"]

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "/home/user/workspace"

# Same limits as the local backend, so the agent sees one behaviour whatever the backend.
_MAX_FILE_BYTES = 1_000_000
_MAX_LISTED = 500
# Deep enough for a project tree; the listing is one request, not a walk.
_LIST_DEPTH = 16
# Dependency and build trees sort before ``package.json``/``src`` and would fill the listing limit
# with files the agent never edits (a Next.js template ships ``node_modules``).
_UNLISTED_DIRS = frozenset({"node_modules", ".git", ".next"})
_MAX_ERROR_CHARS = 300


def _safe_message(action: str, exc: BaseException, secret: str) -> str:
    """A one-line description of ``exc`` that can go to the model and to Temporal's history."""
    detail = str(exc).replace(secret, "***") if secret else str(exc)
    detail = " ".join(detail.split())[:_MAX_ERROR_CHARS]
    message = f"E2B {action} failed: {type(exc).__name__}"
    return f"{message}: {detail}" if detail else message


@contextlib.contextmanager
def _sdk_errors(
    action: str, secret: str, *, passing: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Turn any SDK failure (e2b, httpx or otherwise) into a :class:`SandboxError`.

    Exceptions of the ``passing`` types go through unchanged, for the caller to handle.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, (SandboxError, *passing)):
            raise
        message = _safe_message(action, exc, secret)
        log.warning("%s", message)
        # ``from None``: Temporal serialises an exception's cause chain into the workflow
        # history, and the SDK's original exception is not ours to vouch for.
        raise SandboxError(message) from None


class _CappedText:
    """Collects a command's stream up to a character limit, remembering whether it cut any."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.cut = False

    def add(self, chunk: str) -> None:
        """Keep what fits of ``chunk`` (used as the SDK's ``on_stdout``/``on_stderr``)."""
        room = self._limit - self._size
        if room > 0:
            kept = chunk[:room]
            self._parts.append(kept)
            self._size += len(kept)
        self.cut = self.cut or len(chunk) > room

    @property
    def text(self) -> str:
        return "".join(self._parts)


class E2BSandbox:
    """One run's E2B sandbox, as the agent's tools see it: a workspace folder in the VM."""

    def __init__(
        self,
        info: SandboxInfo,
        sandbox: Any,
        *,
        workspace: str = DEFAULT_WORKSPACE,
        output_limit: int = 64_000,
        secret: str = "",
    ) -> None:
        """Wrap a connected SDK sandbox; ``secret`` is scrubbed from error messages."""
        self.info = info
        self._sandbox = sandbox
        self._workspace = posixpath.normpath(workspace)
        self._output_limit = output_limit
        self._secret = secret

    def _resolve(self, path: str) -> str:
        # The VM's filesystem cannot be resolved from here, so symlinks are not followed: the
        # check keeps the agent's paths meaning the same as with the local backend, while the
        # VM itself is the isolation boundary.
        if not path or "\0" in path or posixpath.isabs(path):
            raise SandboxError(f"path must be relative to the workspace: {path!r}")
        target = posixpath.normpath(posixpath.join(self._workspace, path))
        if target != self._workspace and not target.startswith(self._workspace + "/"):
            raise SandboxError(f"path leaves the workspace: {path!r}")
        return target

    def _errors(
        self, action: str, *, passing: tuple[type[Exception], ...] = ()
    ) -> contextlib.AbstractContextManager[None]:
        return _sdk_errors(action, self._secret, passing=passing)

    async def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` under the workspace; the SDK creates parent folders."""
        if len(content.encode()) > _MAX_FILE_BYTES:
            raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
        target = self._resolve(path)
        with self._errors("write_file"):
            await self._sandbox.files.write(target, content)

    async def read_file(self, path: str) -> str:
        """Read a text file of the workspace (invalid UTF-8 is replaced, not an error)."""
        target = self._resolve(path)
        try:
            with self._errors("read_file", passing=(FileNotFoundException,)):
                # Stat first so a huge file is refused before it is downloaded.
                entry = await self._sandbox.files.get_info(target)
                if entry.type == FileType.DIR:
                    raise SandboxError(f"no such file: {path!r}")
                if entry.size > _MAX_FILE_BYTES:
                    raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
                data = await self._sandbox.files.read(target, format="bytes")
        except FileNotFoundException:
            raise SandboxError(f"no such file: {path!r}") from None
        # A symlink's stat reports the link, not its target: check what actually arrived.
        if len(data) > _MAX_FILE_BYTES:
            raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
        return bytes(data).decode(errors="replace")

    async def list_files(self, path: str = ".") -> list[str]:
        """Files under ``path``, relative to the workspace, sorted, at most 500.

        ``node_modules``, ``.git`` and ``.next`` are left out.
        """
        root = self._workspace if path in ("", ".") else self._resolve(path)
        try:
            with self._errors("list_files", passing=(FileNotFoundException,)):
                entries = await self._sandbox.files.list(root, depth=_LIST_DEPTH)
        except FileNotFoundException:
            raise SandboxError(f"no such folder: {path!r}") from None
        files = []
        for entry in entries:
            if entry.type != FileType.FILE:
                continue
            entry_path = posixpath.normpath(entry.path)
            relative = posixpath.relpath(entry_path, self._workspace)
            # Only folders below the one asked for are left out: listing inside
            # ``node_modules/some-package`` on purpose still works.
            below_root = posixpath.relpath(entry_path, root).split("/")
            if relative.startswith("../") or _UNLISTED_DIRS.intersection(below_root[:-1]):
                continue
            files.append(relative)
        return sorted(files)[:_MAX_LISTED]

    async def run_command(self, command: str, *, timeout_s: float) -> CommandResult:
        """Run ``command`` with bash in the workspace.

        A non-zero exit is a result, not an error; so is a timeout (``timed_out=True``,
        ``exit_code=-1``). Each stream keeps at most ``output_limit`` characters
        (``truncated=True`` when more came). :class:`SandboxError` means the sandbox itself
        could not run it (gone, unreachable, refused).
        """
        if timeout_s <= 0:
            # The SDK reads a timeout of 0 as "no limit".
            raise SandboxError("timeout_s must be positive")
        stdout = _CappedText(self._output_limit)
        stderr = _CappedText(self._output_limit)
        with self._errors("run_command"):
            # In the background so the handle (and the process ID) is ours to kill on timeout;
            # retain_output=False so only the capped copies are held in memory.
            handle = await self._sandbox.commands.run(
                command,
                background=True,
                cwd=self._workspace,
                on_stdout=stdout.add,
                on_stderr=stderr.add,
                timeout=timeout_s,
                retain_output=False,
            )
        exit_code = 0
        timed_out = False
        try:
            await handle.wait()
        except CommandExitException as exc:
            exit_code = exc.exit_code
        except (SandboxNotRunningException, SandboxUnreachableException) as exc:
            # Subclasses of TimeoutException, but the sandbox is gone, not the command slow.
            raise SandboxError(_safe_message("run_command", exc, self._secret)) from None
        except TimeoutException:
            timed_out = True
            exit_code = -1
            # The SDK's timeout only ends our stream; the process would run on in the VM.
            with contextlib.suppress(Exception):
                await handle.kill()
        except Exception as exc:
            raise SandboxError(_safe_message("run_command", exc, self._secret)) from None
        err = stderr.text
        if timed_out:
            err = f"{err}\ntimed out after {timeout_s}s" if err else f"timed out after {timeout_s}s"
        return CommandResult(
            exit_code=exit_code,
            stdout=stdout.text,
            stderr=err,
            timed_out=timed_out,
            truncated=stdout.cut or stderr.cut,
        )


class E2BSandboxProvider:
    """Creates, reconnects to and kills E2B sandboxes, one per run."""

    def __init__(
        self,
        api_key: str,
        *,
        template: str = "base",
        timeout_s: int = 1800,
        preview_port: int | None = 3000,
        command_output_limit: int = 64_000,
        workspace: str = DEFAULT_WORKSPACE,
        sdk: type[Any] = AsyncSandbox,
    ) -> None:
        """Configure the provider.

        ``template`` is the E2B template name or ID (e.g. one with Next.js preinstalled);
        ``timeout_s`` is how long a sandbox lives after its creation or the latest connect;
        ``preview_port`` is the port whose public URL goes into ``SandboxInfo.url`` (``None``
        for none); ``sdk`` is the ``AsyncSandbox`` class, replaceable in tests.
        """
        if not api_key:
            # The SDK would silently fall back to the E2B_API_KEY environment variable.
            raise ValueError("an E2B API key is required")
        if not posixpath.isabs(workspace):
            raise ValueError(f"workspace must be an absolute path in the sandbox: {workspace!r}")
        self._api_key = api_key
        self._template = template
        self._timeout_s = timeout_s
        self._preview_port = preview_port
        self._output_limit = command_output_limit
        self._workspace = posixpath.normpath(workspace)
        self._sdk = sdk

    def _errors(
        self, action: str, *, passing: tuple[type[Exception], ...] = ()
    ) -> contextlib.AbstractContextManager[None]:
        return _sdk_errors(action, self._api_key, passing=passing)

    async def create(self, run: str) -> SandboxInfo:
        """Create a sandbox for ``run`` from the template, with its workspace folder."""
        require_id("run", run)
        try:
            with self._errors("create", passing=(RateLimitException,)):
                sandbox = await self._sdk.create(
                    template=self._template,
                    timeout=self._timeout_s,
                    metadata={"run": run},
                    api_key=self._api_key,
                    # The SDK retries 429/5xx itself; Temporal already retries activities.
                    retries=0,
                )
        except RateLimitException as exc:
            # 429: the team's concurrent sandboxes are all in use; the run waits for one.
            raise SandboxBusy(_safe_message("create", exc, self._api_key)) from None
        try:
            with self._errors("create"):
                await sandbox.files.make_dir(self._workspace)
                url = (
                    f"https://{sandbox.get_host(self._preview_port)}"
                    if self._preview_port is not None
                    else None
                )
                sandbox_id = str(sandbox.sandbox_id)
        except SandboxError:
            # A retried activity creates a new sandbox; this one would bill until its timeout.
            with contextlib.suppress(Exception):
                await self._sdk.kill(sandbox.sandbox_id, api_key=self._api_key, retries=0)
            raise
        return SandboxInfo(id=sandbox_id, backend="e2b", url=url)

    async def connect(self, info: SandboxInfo) -> E2BSandbox:
        """Reconnect to the sandbox ``info`` names, resuming it if paused.

        Connecting extends the sandbox's lifetime to ``timeout_s`` from now (E2B only ever
        lengthens it), so a run that is being worked on does not expire mid-way.
        """
        if info.backend != "e2b":
            raise SandboxError(f"sandbox {info.id} is not an E2B sandbox ({info.backend})")
        sandbox_id = require_id("sandbox", info.id)
        try:
            with self._errors("connect", passing=(NotFoundException,)):
                sandbox = await self._sdk.connect(
                    sandbox_id, timeout=self._timeout_s, api_key=self._api_key, retries=0
                )
        except NotFoundException:
            raise SandboxError(f"sandbox {info.id} does not exist") from None
        return E2BSandbox(
            info,
            sandbox,
            workspace=self._workspace,
            output_limit=self._output_limit,
            secret=self._api_key,
        )

    async def destroy(self, info: SandboxInfo) -> None:
        """Kill the sandbox; one that is already gone is not an error."""
        if info.backend != "e2b":
            raise SandboxError(f"sandbox {info.id} is not an E2B sandbox ({info.backend})")
        sandbox_id = require_id("sandbox", info.id)
        try:
            with self._errors("destroy", passing=(NotFoundException,)):
                # Returns False when the sandbox was not found: nothing left to do either way.
                await self._sdk.kill(sandbox_id, api_key=self._api_key, retries=0)
        except NotFoundException:
            return

    async def destroy_for_run(self, run: str) -> None:
        """Kill every sandbox whose metadata names ``run`` (``create`` tags each one so)."""
        require_id("run", run)
        with self._errors("list"):
            paginator = self._sdk.list(
                query=SandboxQuery(metadata={"run": run}), api_key=self._api_key
            )
            found: list[str] = []
            while paginator.has_next:
                found.extend(str(item.sandbox_id) for item in await paginator.next_items())
        for sandbox_id in found:
            await self.destroy(SandboxInfo(id=sandbox_id, backend="e2b"))
