"""The local sandbox: a workspace folder per run, and commands confined to it.

File tools refuse paths that leave the workspace (``..``, absolute paths, symlinks out of it).
Commands run under the limits in :mod:`agentstream.sandbox.confinement`: time, CPU, memory, file
size, process count and output; no network by default; and, when the service runs as root, as a
uid of the run's own that can write nowhere but its workspace. For untrusted code at scale, the
E2B backend runs each sandbox in its own microVM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from agentstream.sandbox.base import CommandResult, SandboxError
from agentstream.sandbox.confinement import (
    Confinement,
    become_subreaper,
    child_setup,
    kill_everything_of,
    network_isolation_available,
    run_uid,
)
from schemas import SandboxInfo, require_id

log = logging.getLogger(__name__)

_MAX_FILE_BYTES = 1_000_000
_MAX_LISTED = 500


class LocalSandbox:
    """One run's workspace folder."""

    def __init__(
        self,
        info: SandboxInfo,
        workspace: Path,
        *,
        output_limit: int,
        limits: Limits,
        uid: int | None,
        isolate_network: bool,
    ) -> None:
        self.info = info
        self._workspace = workspace
        self._output_limit = output_limit
        self._limits = limits
        self._uid = uid
        self._isolate_network = isolate_network

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
        target = self._resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, data)
        if self._uid is not None:
            # Written by the service, owned by the run: its commands may edit their own files.
            for owned in (target, *target.parents):
                if owned == self._workspace:
                    break
                os.chown(owned, self._uid, self._uid)

    async def read_file(self, path: str) -> str:
        target = self._resolve(path)
        if not target.is_file():
            raise SandboxError(f"no such file: {path!r}")
        if target.stat().st_size > _MAX_FILE_BYTES:
            raise SandboxError(f"file larger than {_MAX_FILE_BYTES} bytes")
        data = await asyncio.to_thread(target.read_bytes)
        return data.decode(errors="replace")

    async def list_files(self, path: str = ".") -> list[str]:
        root = self._workspace if path in ("", ".") else self._resolve(path)
        if not root.is_dir():
            raise SandboxError(f"no such folder: {path!r}")
        files = sorted(str(p.relative_to(self._workspace)) for p in root.rglob("*") if p.is_file())
        return files[:_MAX_LISTED]

    async def run_command(self, command: str, *, timeout_s: float) -> CommandResult:
        confinement = Confinement(
            cpu_s=max(1, int(timeout_s) + 1),
            memory_bytes=self._limits.memory_bytes,
            file_bytes=self._limits.file_bytes,
            max_processes=self._limits.max_processes,
            isolate_network=self._isolate_network,
            uid=self._uid,
        )
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=self._workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._workspace)},
            start_new_session=True,
            preexec_fn=child_setup(confinement),
        )
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
            if self._uid is not None:
                # And whatever escaped the group (forked after the kill) under the run's uid.
                await asyncio.to_thread(kill_everything_of, self._uid)
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


@dataclass(frozen=True)
class Limits:
    """What one command may use."""

    memory_bytes: int = 2 << 30
    file_bytes: int = 64 << 20
    max_processes: int = 64


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


class LocalSandboxProvider:
    """Workspaces under one root folder, shared by the worker and the agent on one machine."""

    def __init__(
        self,
        root: Path,
        *,
        output_limit: int = 64_000,
        limits: Limits | None = None,
        allow_network: bool = False,
    ) -> None:
        self._root = root.resolve()
        self._output_limit = output_limit
        self._limits = limits or Limits()
        self._root.mkdir(parents=True, exist_ok=True)
        self._isolate_network = not allow_network and network_isolation_available()
        if not allow_network and not self._isolate_network:
            log.warning("sandbox commands are NOT network-isolated: no network namespaces here")
        self._per_run_uid = os.geteuid() == 0 and become_subreaper()
        if self._per_run_uid:
            # Runs may reach their own workspace, but not list the others.
            self._root.chmod(0o711)
            if not _traversable_by_others(self._root):
                log.warning(
                    "sandbox root %s is not reachable by other users: commands keep their "
                    "limits but run as root; set SANDBOX_ROOT under a traversable folder",
                    self._root,
                )
                self._per_run_uid = False

    def _uid(self, info: SandboxInfo) -> int | None:
        return run_uid(info.id) if self._per_run_uid else None

    def _workspace(self, info: SandboxInfo) -> Path:
        return self._root / require_id("sandbox", info.id)

    async def create(self, run: str) -> SandboxInfo:
        # One sandbox per run, so the run ID names its workspace.
        info = SandboxInfo(id=require_id("run", run), backend="local")
        workspace = self._workspace(info)
        workspace.mkdir(parents=True, exist_ok=True)
        uid = self._uid(info)
        if uid is not None:
            os.chown(workspace, uid, uid)
            workspace.chmod(0o700)
        return info

    async def connect(self, info: SandboxInfo) -> LocalSandbox:
        workspace = self._workspace(info)
        if not workspace.is_dir():
            raise SandboxError(f"sandbox {info.id} does not exist")
        return LocalSandbox(
            info,
            workspace.resolve(),
            output_limit=self._output_limit,
            limits=self._limits,
            uid=self._uid(info),
            isolate_network=self._isolate_network,
        )

    async def destroy(self, info: SandboxInfo) -> None:
        await asyncio.to_thread(shutil.rmtree, self._workspace(info), True)
