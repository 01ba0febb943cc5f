"""How a local sandbox command is confined: limits, identity and network, set in the child.

Everything here runs in the forked child before ``exec`` (``preexec_fn``), so it only narrows
that one command. As root, each run gets its own unprivileged uid (other runs' workspaces and
root-only files such as /etc/shadow become unreadable, and the process limit becomes per run)
and a fresh network namespace with no interfaces. Without root, a user namespace gives the same
network isolation where the kernel allows it; the limits apply either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
# Per-run uids live in a range no real account uses.
_UID_BASE = 200_000
_UID_SPAN = 100_000


@dataclass(frozen=True)
class Confinement:
    """Limits for one command, and whether network isolation is to be applied."""

    cpu_s: int
    memory_bytes: int
    file_bytes: int
    max_processes: int
    isolate_network: bool
    uid: int | None


def run_uid(run: str) -> int:
    """The unprivileged uid a run's commands run as (when the service runs as root)."""
    return _UID_BASE + zlib.crc32(run.encode()) % _UID_SPAN


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _network_flags() -> int:
    # Root can make a network namespace directly; others need a user namespace around it.
    return _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET


def network_isolation_available() -> bool:
    """Whether this machine lets a child enter a network namespace of its own."""
    flags = _network_flags()
    try:
        subprocess.run(["/bin/true"], check=True, timeout=10, preexec_fn=lambda: _unshare(flags))
    except (subprocess.SubprocessError, OSError):
        return False
    return True


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


def _user_process_count() -> int:
    return len(pids_of(os.getuid()))


def child_setup(confinement: Confinement) -> Callable[[], None]:
    """The ``preexec_fn`` applying ``confinement``."""
    # RLIMIT_NPROC counts every process of the uid: for a shared (non-root) uid, leave room
    # for what the user already runs, so the limit stops a fork bomb, not the user's session.
    nproc = (
        confinement.max_processes
        if confinement.uid is not None
        else _user_process_count() + confinement.max_processes
    )
    net_flags = _network_flags() if confinement.isolate_network else 0

    def setup() -> None:
        if net_flags:
            _unshare(net_flags)
        limits = (
            (resource.RLIMIT_CPU, confinement.cpu_s),
            (resource.RLIMIT_AS, confinement.memory_bytes),
            (resource.RLIMIT_FSIZE, confinement.file_bytes),
            (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_CORE, 0),
        )
        for limit, value in limits:
            resource.setrlimit(limit, (value, value))
        if confinement.uid is not None:
            os.setgroups([])
            os.setgid(confinement.uid)
            os.setuid(confinement.uid)

    return setup
