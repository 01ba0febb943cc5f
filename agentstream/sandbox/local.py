"""The local sandbox: a workspace folder per run and commands with time and output limits.

It is for the local stack and tests, not for hostile code: isolation beyond path confinement and
resource limits (a separate user, no network) belongs to a hardened backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
from pathlib import Path

from agentstream.sandbox.base import CommandResult, SandboxError
from schemas import SandboxInfo, require_id

_MAX_FILE_BYTES = 1_000_000
_MAX_LISTED = 500


class LocalSandbox:
    """One run's workspace folder."""

    def __init__(self, info: SandboxInfo, workspace: Path, *, output_limit: int) -> None:
        self.info = info
        self._workspace = workspace
        self._output_limit = output_limit

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
        cpu_s = max(1, int(timeout_s) + 1)

        def limit_child() -> None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))

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
            preexec_fn=limit_child,
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
    """Workspaces under one root folder, shared by the worker and the agent on one machine."""

    def __init__(self, root: Path, *, output_limit: int = 64_000) -> None:
        self._root = root.resolve()
        self._output_limit = output_limit

    def _workspace(self, info: SandboxInfo) -> Path:
        return self._root / require_id("sandbox", info.id)

    async def create(self, run: str) -> SandboxInfo:
        # One sandbox per run, so the run ID names its workspace.
        info = SandboxInfo(id=require_id("run", run), backend="local")
        self._workspace(info).mkdir(parents=True, exist_ok=True)
        return info

    async def connect(self, info: SandboxInfo) -> LocalSandbox:
        workspace = self._workspace(info)
        if not workspace.is_dir():
            raise SandboxError(f"sandbox {info.id} does not exist")
        return LocalSandbox(info, workspace.resolve(), output_limit=self._output_limit)

    async def destroy(self, info: SandboxInfo) -> None:
        await asyncio.to_thread(shutil.rmtree, self._workspace(info), True)
