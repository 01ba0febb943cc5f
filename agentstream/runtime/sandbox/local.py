"""The local sandbox: a workspace folder per run, and commands confined to it.

File tools refuse paths that leave the workspace (``..``, absolute paths, symlinks out of it).
Commands run under :mod:`agentstream.runtime.sandbox.confinement`: a private mount view in which the
workspace (with the run's temp dir, ``TMPDIR``) and a private /tmp are the only writable places;
time, CPU, memory, file size, process count and output limits; no network by default; and, when
the service runs as root, a uid of the run's own, unique among live sandboxes. A machine that
cannot give commands a private mount view gets no commands, unless the operator allows
unconfined ones. For untrusted code at scale, the E2B backend runs each sandbox in its own
microVM.

Every filesystem call runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentstream.runtime.sandbox.base import CommandResult, SandboxError
from agentstream.runtime.sandbox.confinement import (
    Confinement,
    Isolation,
    Limits,
    become_subreaper,
    kill_everything_of,
    probe_isolation,
    processes_of_this_user,
    start_confined,
)
from agentstream.runtime.sandbox.uids import UidClaims
from schemas import SandboxInfo, require_id

log = logging.getLogger(__name__)

_MAX_FILE_BYTES = 1_000_000
_MAX_LISTED = 500
# The run's own temp dir (TMPDIR), inside its workspace; not listed among its files.
TEMP_DIR = ".tmp"
_UNCONFINED = Isolation(mount_view=False, network=False)


class LocalSandbox:
    """One run's workspace folder."""

    def __init__(
        self,
        info: SandboxInfo,
        workspace: Path,
        *,
        root: Path,
        output_limit: int,
        limits: Limits,
        uid: int | None,
        isolation: Callable[[], Awaitable[Isolation]],
    ) -> None:
        self.info = info
        self._workspace = workspace
        self._root = root
        self._output_limit = output_limit
        self._limits = limits
        self._uid = uid
        self._isolation = isolation

    def _resolve(self, path: str) -> Path:
        # resolve() follows symlinks, so a link pointing out of the workspace is caught here too.
        if not path or Path(path).is_absolute():
            raise SandboxError(f"path must be relative to the workspace: {path!r}")
        target = (self._workspace / path).resolve()
        if not target.is_relative_to(self._workspace):
            raise SandboxError(f"path leaves the workspace: {path!r}")
        return target

    async def write_file(self, path: str, content: str) -> None:
        data = content.encode()
        if len(data) > _MAX_FILE_BYTES:
            raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
        await asyncio.to_thread(self._write, path, data)

    def _write(self, path: str, data: bytes) -> None:
        target = self._resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if self._uid is not None:
            # Written by the service, owned by the run: its commands may edit their own files.
            for owned in (target, *target.parents):
                if owned == self._workspace:
                    break
                os.chown(owned, self._uid, self._uid, follow_symlinks=False)

    async def read_file(self, path: str) -> str:
        data = await asyncio.to_thread(self._read, path)
        return data.decode(errors="replace")

    def _read(self, path: str) -> bytes:
        target = self._resolve(path)
        if not target.is_file():
            raise SandboxError(f"no such file: {path!r}")
        if target.stat().st_size > _MAX_FILE_BYTES:
            raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
        return target.read_bytes()

    async def list_files(self, path: str = ".") -> list[str]:
        return await asyncio.to_thread(self._list, path)

    def _list(self, path: str) -> list[str]:
        root = self._workspace if path in ("", ".") else self._resolve(path)
        if not root.is_dir():
            raise SandboxError(f"no such folder: {path!r}")
        files = sorted(
            str(relative)
            for p in root.rglob("*")
            if p.is_file() and (relative := p.relative_to(self._workspace)).parts[0] != TEMP_DIR
        )
        return files[:_MAX_LISTED]

    async def run_command(self, command: str, *, timeout_s: float) -> CommandResult:
        isolation = await self._isolation()
        limits = self._limits
        # RLIMIT_NPROC counts every process of the uid: for a shared (non-root) uid, leave room
        # for what the user already runs, so the limit stops a fork bomb, not the user's session.
        processes = limits.max_processes
        if self._uid is None:
            processes += await asyncio.to_thread(processes_of_this_user)
        confinement = Confinement(
            limits=limits,
            cpu_s=max(1, int(timeout_s) + 1),
            processes=processes,
            isolation=isolation,
            uid=self._uid,
            workspace=self._workspace,
            root=self._root,
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._workspace),
            "TMPDIR": str(self._workspace / TEMP_DIR),
        }
        started = await start_confined(
            confinement, ["/bin/sh", "-c", command], env=env, capture_output=True
        )
        proc = started.process
        assert proc.stdout is not None and proc.stderr is not None
        reads = asyncio.gather(
            self._read_capped(proc.stdout), self._read_capped(proc.stderr), proc.wait()
        )
        timed_out = False
        try:
            (out, out_cut), (err, err_cut), _ = await asyncio.wait_for(reads, timeout_s)
        except TimeoutError:
            timed_out = True
            out, out_cut, err, err_cut = b"", False, b"", False
        finally:
            # The whole process group: a command's children must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            setup_error = started.setup_error()
            if self._uid is not None:
                # And whatever escaped the group (forked after the kill) under the run's uid.
                await asyncio.to_thread(kill_everything_of, self._uid)
        if setup_error is not None:
            log.warning("sandbox %s: %s", self.info.id, setup_error)
            raise SandboxError(setup_error)
        return CommandResult(
            exit_code=proc.returncode if proc.returncode is not None else -1,
            stdout=out.decode(errors="replace"),
            stderr=f"timed out after {timeout_s}s" if timed_out else err.decode(errors="replace"),
            timed_out=timed_out,
            truncated=out_cut or err_cut,
        )

    async def _read_capped(self, stream: asyncio.StreamReader) -> tuple[bytes, bool]:
        """Read to EOF, keeping at most the output limit (the rest is drained, not stored)."""
        kept = bytearray()
        cut = False
        while chunk := await stream.read(65536):
            room = self._output_limit - len(kept)
            if room > 0:
                kept += chunk[:room]
            cut = cut or len(chunk) > room
        return bytes(kept), cut


class LocalSandboxProvider:
    """Workspaces under one root folder, shared by the worker and the agent on one machine.

    The worker creates and destroys sandboxes, the agent service connects to them and runs
    their commands; as root, the uid claims under the root tie the two together.
    """

    def __init__(
        self,
        root: Path,
        *,
        output_limit: int = 64_000,
        limits: Limits | None = None,
        allow_network: bool = False,
        allow_unconfined: bool = False,
    ) -> None:
        self._root = root.resolve()
        self._output_limit = output_limit
        self._limits = limits or Limits()
        self._allow_network = allow_network
        self._allow_unconfined = allow_unconfined
        # None once probed: commands are refused here.
        self._isolation: Isolation | None = None
        self._probed = False
        self._probe_lock = asyncio.Lock()
        self._root.mkdir(parents=True, exist_ok=True)
        self._claims: UidClaims | None = None
        if os.geteuid() == 0:
            if not become_subreaper():
                log.warning("cannot become a child subreaper: killed commands may stay zombies")
            # Runs may reach their own workspace, but not list the others.
            self._root.chmod(0o711)
            self._claims = UidClaims(self._root)

    async def _confinement(self) -> Isolation:
        """The isolation commands get here (probed once), or a refusal to run any."""
        async with self._probe_lock:
            if not self._probed:
                found = await probe_isolation(
                    isolate_network=not self._allow_network, limits=self._limits
                )
                self._probed = True
                if found is None and not self._allow_unconfined:
                    log.error("sandbox commands refused: %s", _NO_MOUNT_VIEW)
                elif found is None:
                    log.warning("sandbox commands run UNCONFINED (allowed): %s", _NO_MOUNT_VIEW)
                    found = _UNCONFINED
                elif not found.network and not self._allow_network:
                    log.warning("sandbox commands are NOT network-isolated: no network namespace")
                self._isolation = found
        if self._isolation is None:
            raise SandboxError(f"sandbox commands are disabled: {_NO_MOUNT_VIEW}")
        return self._isolation

    def _workspace(self, info: SandboxInfo) -> Path:
        return self._root / require_id("sandbox", info.id)

    async def create(self, run: str) -> SandboxInfo:
        # One sandbox per run, so the run ID names its workspace.
        info = SandboxInfo(id=require_id("run", run), backend="local")
        await asyncio.to_thread(self._create, info)
        return info

    def _create(self, info: SandboxInfo) -> None:
        workspace = self._workspace(info)
        # The workspace exists before its uid is claimed: a claim without one is stale.
        workspace.mkdir(exist_ok=True)
        temp = workspace / TEMP_DIR
        with contextlib.suppress(FileExistsError):
            temp.mkdir()
        if self._claims is not None:
            uid = self._claims.claim(info.id)
            for owned in (workspace, temp):
                os.chown(owned, uid, uid, follow_symlinks=False)
            workspace.chmod(0o700)

    async def connect(self, info: SandboxInfo) -> LocalSandbox:
        workspace = self._workspace(info)
        uid = await asyncio.to_thread(self._uid_of, info, workspace)
        return LocalSandbox(
            info,
            workspace,
            root=self._root,
            output_limit=self._output_limit,
            limits=self._limits,
            uid=uid,
            isolation=self._confinement,
        )

    def _uid_of(self, info: SandboxInfo, workspace: Path) -> int | None:
        if not workspace.is_dir():
            raise SandboxError(f"sandbox {info.id} does not exist")
        if self._claims is None:
            return None
        uid = self._claims.uid_of(info.id)
        # Never run a sandbox's commands as root, nor as a uid its workspace does not belong to.
        if uid is None or workspace.stat().st_uid != uid:
            raise SandboxError(f"sandbox {info.id} holds no uid of its own")
        return uid

    async def destroy(self, info: SandboxInfo) -> None:
        await asyncio.to_thread(self._destroy, self._workspace(info), info.id)

    async def destroy_for_run(self, run: str) -> None:
        # The run's ID is its sandbox's ID here (see ``create``).
        await self.destroy(SandboxInfo(id=require_id("run", run), backend="local"))

    def _destroy(self, workspace: Path, run: str) -> None:
        uid = self._claims.uid_of(run) if self._claims is not None else None
        if uid is not None:
            # Whatever still runs (a command of a cancelled run) goes before its uid is given back.
            kill_everything_of(uid)
        shutil.rmtree(workspace, ignore_errors=True)
        if self._claims is not None:
            self._claims.release(run)


_NO_MOUNT_VIEW = (
    "this machine gives commands no private mount view (root, or unprivileged user namespaces, "
    "is needed); SANDBOX_ALLOW_UNCONFINED=1 runs them anyway, able to write wherever the "
    "service can"
)
