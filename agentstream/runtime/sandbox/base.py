"""The sandbox interface the worker (lifecycle) and the agent (tools) program against."""

from __future__ import annotations

from typing import Protocol

import msgspec

from schemas import SandboxInfo


class SandboxError(Exception):
    """A sandbox operation refused or failed; its message is safe to show the model."""


class SandboxBusy(SandboxError):
    """The backend is at its concurrency limit (E2B's sandboxes per team): retry later."""


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of one command."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False


class Sandbox(Protocol):
    """A workspace the agent can write files to and run commands in."""

    info: SandboxInfo

    async def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (relative to the workspace), creating folders."""
        ...

    async def read_file(self, path: str) -> str:
        """Read a text file of the workspace."""
        ...

    async def list_files(self, path: str = ".") -> list[str]:
        """Files under ``path``, relative to the workspace, sorted."""
        ...

    async def run_command(self, command: str, *, timeout_s: float) -> CommandResult:
        """Run a shell command in the workspace with a time and output limit."""
        ...


class SandboxProvider(Protocol):
    """Creates, reaches and destroys sandboxes of one backend."""

    async def create(self, run: str) -> SandboxInfo:
        """A new sandbox for ``run``."""
        ...

    async def connect(self, info: SandboxInfo) -> Sandbox:
        """The sandbox ``info`` names, created earlier (possibly by another process)."""
        ...

    async def destroy(self, info: SandboxInfo) -> None:
        """Remove the sandbox; destroying one that is gone is not an error."""
        ...

    async def destroy_for_run(self, run: str) -> None:
        """Remove whatever sandbox ``create(run)`` made here, found by the run's ID alone.

        For a caller that may not have learnt the sandbox's :class:`SandboxInfo`: a creation
        whose result was lost. Finding none is not an error.
        """
        ...
