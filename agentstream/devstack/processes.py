"""Child processes with logs, readiness checks and a clean stop: the local stack's parts."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

_PR_SET_PDEATHSIG = 1
_PUMP_READ_BYTES = 65_536
# The tail serves readiness markers and error messages: the start of a huge line is enough.
_TAIL_LINE_BYTES = 8_192


# Runs in the child before it execs the service: be sent SIGTERM if the process that started it
# dies (even by SIGKILL). A test run or CLI that is killed never runs its clean-up; without this
# its whole stack would live on. An exec wrapper, not a ``preexec_fn``: that is unsafe in a
# process that runs threads. argv: the parent's pid, then the service's command line.
_DIE_WITH_PARENT = f"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent gone before the service started")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` started through the wrapper that ties its life to this process's."""
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *argv]


class ProcessFailed(RuntimeError):
    """A child exited or never became ready; the message carries its last output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server can listen on ``port`` of 127.0.0.1 now.

    Checked as the servers bind (uvicorn, and Go's NATS and Temporal): with ``SO_REUSEADDR``, so
    connections of a server stopped a moment ago, lingering in TIME_WAIT, do not make the port look
    taken. A socket listening there still does.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_or_free(preferred: int) -> int:
    """``preferred`` if a server can listen on it on 127.0.0.1, else a free port."""
    return preferred if port_is_free(preferred) else free_port()


class ServiceProcess:
    """One child process: its output goes to a log file and is scanned for readiness."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._line_seen = asyncio.Condition()

    @property
    def pid(self) -> int | None:
        """The running process's ID."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._proc is not None and self._proc.returncode is None

    def tail(self) -> str:
        """The last lines the process printed."""
        return "\n".join(self._tail)

    async def start(self) -> None:
        """Start the process in its own process group (so a stop reaches its children)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._tail.clear()
        self._proc = await asyncio.create_subprocess_exec(
            *_dying_with_parent(self.argv),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = asyncio.create_task(self._pump_output(self._proc))

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the output to the log and keep the last lines for readiness and errors.

        Reads blocks, not lines: ``StreamReader.readline`` raises on a line longer than its
        buffer limit (64 KiB), which would end the pump and leave the child blocked on a full
        pipe. A line of any length goes to the log whole; the tail keeps its start.
        """
        assert proc.stdout is not None
        partial = b""
        # The log is written from a thread: a slow disk must not stall the event loop, which
        # in tests and the CLI also serves the stack's clients.
        log = await asyncio.to_thread(self.log_path.open, "ab", buffering=0)
        try:
            while block := await proc.stdout.read(_PUMP_READ_BYTES):
                await asyncio.to_thread(log.write, block)
                *ended, rest = block.split(b"\n")
                lines = []
                for piece in ended:
                    lines.append((partial + piece[:_TAIL_LINE_BYTES])[:_TAIL_LINE_BYTES])
                    partial = b""
                partial = (partial + rest[:_TAIL_LINE_BYTES])[:_TAIL_LINE_BYTES]
                if lines:
                    async with self._line_seen:
                        self._tail.extend(line.decode(errors="replace").rstrip() for line in lines)
                        self._line_seen.notify_all()
        finally:
            await asyncio.to_thread(log.close)
        async with self._line_seen:
            if partial:
                self._tail.append(partial.decode(errors="replace").rstrip())
            self._line_seen.notify_all()

    async def wait_for_line(self, marker: str, timeout_s: float) -> None:
        """Wait until the process prints a line containing ``marker``."""

        def seen() -> bool:
            return any(marker in line for line in self._tail) or not self.running

        try:
            async with asyncio.timeout(timeout_s), self._line_seen:
                await self._line_seen.wait_for(seen)
        except TimeoutError:
            raise ProcessFailed(
                f"{self.name} not ready after {timeout_s}s:\n{self.tail()}"
            ) from None
        if not any(marker in line for line in self._tail):
            raise ProcessFailed(f"{self.name} exited before it was ready:\n{self.tail()}")

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        """Wait until ``check`` passes, failing early if the process exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if not self.running:
                raise ProcessFailed(f"{self.name} exited before it was ready:\n{self.tail()}")
            if await check():
                return
            if loop.time() > deadline:
                raise ProcessFailed(f"{self.name} not ready after {timeout_s}s:\n{self.tail()}")
            # Polling a readiness probe: the process offers no event to wait on.
            await asyncio.sleep(0.1)

    async def wait_http_ok(self, url: str, timeout_s: float) -> None:
        """Wait until ``url`` answers 200."""
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def answers() -> bool:
                try:
                    return (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            await self.wait_until(answers, timeout_s)

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        return await self._end(signal.SIGTERM, timeout_s)

    async def kill(self) -> int | None:
        """SIGKILL at once, as a crash would."""
        return await self._end(signal.SIGKILL, 10.0)

    async def _end(self, sig: signal.Signals, timeout_s: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Children left in the group (none expected) must not outlive the stack.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._pump is not None:
            await self._pump
        return proc.returncode
