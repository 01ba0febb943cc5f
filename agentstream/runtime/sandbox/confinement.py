"""How a local sandbox command is confined: namespaces, a private mount view, limits, identity.

A command starts through :mod:`agentstream.runtime.sandbox.enter`, a small program that confines its
own process and then execs the command; no ``preexec_fn``, which is unsafe in a process that
runs threads. The command gets a mount namespace in which only its workspace and a private
/tmp are writable and other runs' workspaces are gone, a network namespace with no interfaces
(unless the network is allowed), resource limits, and, when the service runs as root, its
run's own unprivileged uid (claimed in :mod:`agentstream.runtime.sandbox.uids`), which makes
root-only files unreadable and the process limit per run. Without root, a user namespace gives the
same mount view and network isolation where the kernel allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ENTER = Path(__file__).with_name("enter.py")
_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Isolation:
    """Which namespaces commands get: found once per service by :func:`probe_isolation`."""

    mount_view: bool
    network: bool


@dataclass(frozen=True)
class Limits:
    """What one command may use."""

    memory_bytes: int = 2 << 30
    file_bytes: int = 64 << 20
    max_processes: int = 64
    # The private /tmp (also at /var/tmp and /dev/shm), held in memory.
    tmp_bytes: int = 64 << 20


@dataclass(frozen=True)
class Confinement:
    """Everything one command is confined by."""

    limits: Limits
    cpu_s: int
    # The RLIMIT_NPROC to set: the per-command limit, plus what a shared uid already runs.
    processes: int
    isolation: Isolation
    uid: int | None = None
    workspace: Path | None = None
    root: Path | None = None

    def argv(self, program: Sequence[str], *, status_fd: int) -> list[str]:
        """The command line that runs ``program`` under this confinement."""
        config = {
            "mount_view": self.isolation.mount_view,
            "isolate_network": self.isolation.network,
            "workspace": str(self.workspace) if self.workspace else None,
            "root": str(self.root) if self.root else None,
            "tmp_bytes": self.limits.tmp_bytes,
            "uid": self.uid,
            "limits": {
                "RLIMIT_CPU": self.cpu_s,
                "RLIMIT_AS": self.limits.memory_bytes,
                "RLIMIT_FSIZE": self.limits.file_bytes,
                "RLIMIT_NPROC": self.processes,
                "RLIMIT_CORE": 0,
            },
            "status_fd": status_fd,
        }
        # -I -S: no site-packages and no PYTHON* variables, which the command's env may hold.
        return [sys.executable, "-I", "-S", str(_ENTER), json.dumps(config), *program]


class ConfinedProcess:
    """A started command, and the channel on which its confinement reports a failed setup."""

    def __init__(self, process: asyncio.subprocess.Process, status_fd: int) -> None:
        self.process = process
        self._status_fd: int | None = status_fd

    def setup_error(self) -> str | None:
        """Once the process has exited: why it was never confined and run, else None."""
        if self._status_fd is None:
            return None
        try:
            # Non-blocking and already complete: every writer exited or exec'd (close-on-exec).
            message = os.read(self._status_fd, 4096).decode(errors="replace")
        except BlockingIOError:
            message = ""
        finally:
            self.close()
        return message or None

    def close(self) -> None:
        """Release the status channel (idempotent)."""
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None


async def start_confined(
    confinement: Confinement,
    program: Sequence[str],
    *,
    env: dict[str, str],
    capture_output: bool,
) -> ConfinedProcess:
    """Start ``program`` under ``confinement``, in a session (process group) of its own."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    output = asyncio.subprocess.PIPE if capture_output else asyncio.subprocess.DEVNULL
    try:
        process = await asyncio.create_subprocess_exec(
            *confinement.argv(program, status_fd=write_fd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
            start_new_session=True,
            pass_fds=(write_fd,),
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return ConfinedProcess(process, read_fd)


async def probe_isolation(*, isolate_network: bool, limits: Limits) -> Isolation | None:
    """The strongest isolation this machine grants a command; None when not even a mount view.

    Blocking parts (a /proc scan) run in a worker thread.
    """
    candidates = [Isolation(mount_view=True, network=isolate_network)]
    if isolate_network:
        candidates.append(Isolation(mount_view=True, network=False))
    processes = limits.max_processes + await asyncio.to_thread(processes_of_this_user)
    for isolation in candidates:
        probe = Confinement(limits=limits, cpu_s=10, processes=processes, isolation=isolation)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        started = await start_confined(probe, ["/bin/true"], env=env, capture_output=False)
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                code = await started.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.process.pid, signal.SIGKILL)
            code = await started.process.wait()
        error = started.setup_error()
        if code == 0 and error is None:
            return isolation
        log.info("sandbox isolation %s unavailable: %s", isolation, error or f"exit {code}")
    return None


def pids_of(uid: int) -> list[int]:
    """Every process (zombies included) running as ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt the orphans of the commands this process starts, so it can reap them itself.

    Killed processes stay zombies until reaped, and zombies still count against the run's
    process limit; left to pid 1 (which in a container may reap late or never), the run could
    not start another command.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def kill_everything_of(uid: int, *, rounds: int = 200) -> bool:
    """Kill and reap every process of a run's uid; True when none is left.

    A process group kill misses children forked after the signal (a fork bomb's). Freezing
    every process of the uid, then killing them, round after round, leaves none: a stopped
    process cannot fork. The service runs as root, so it may signal them all; as their
    subreaper it reaps them.
    """
    for _ in range(rounds):
        pids = pids_of(uid)
        if not pids:
            return True
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        # Dying takes the kernel a moment; this runs in a worker thread, never on the loop.
        time.sleep(0.01)
    return not pids_of(uid)


def processes_of_this_user() -> int:
    """How many processes run as this service's uid (blocking: a /proc scan)."""
    return len(pids_of(os.getuid()))
