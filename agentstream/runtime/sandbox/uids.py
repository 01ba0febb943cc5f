"""Per-run sandbox uids, unique among live sandboxes on a machine, across processes.

A uid is claimed by creating ``<root>/.uids/uid-<n>`` exclusively (``O_EXCL``), naming the run,
and recorded for the run in ``<root>/.uids/run-<run>``, which is how the agent service (that
runs the commands) finds the uid the worker (that created the sandbox) claimed. Claims are made
and released under an exclusive ``flock`` of ``<root>/.uids/lock``, so every worker and agent
sharing the sandbox root sees one consistent table. A claim whose run has no workspace any more
(its destroy was interrupted) is stale and taken over, after killing whatever still runs as it.

The folder is root's own (0700) and outside every workspace: a run cannot edit its record to
borrow another run's uid. Every function here blocks (file locks, /proc scans): call them from
a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from agentstream.runtime.sandbox.base import SandboxError
from agentstream.runtime.sandbox.confinement import kill_everything_of
from schemas import is_valid_id

# A range no real account uses.
UID_BASE = 200_000
UID_SPAN = 100_000


class UidClaims:
    """The table of claimed uids under one sandbox root."""

    def __init__(self, root: Path, *, base: int = UID_BASE, span: int = UID_SPAN) -> None:
        self._root = root
        self._dir = root / ".uids"
        self._base = base
        self._span = span
        self._dir.mkdir(mode=0o700, exist_ok=True)
        self._dir.chmod(0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self, name: str) -> str | None:
        try:
            return (self._dir / name).read_text().strip()
        except FileNotFoundError:
            return None

    def _recorded(self, run: str) -> int | None:
        text = self._read(f"run-{run}")
        if text is None or not text.isdigit():
            return None
        uid = int(text)
        # Only while the claim still names the run: a record alone proves nothing.
        return uid if self._read(f"uid-{uid}") == run else None

    def _is_stale(self, owner: str) -> bool:
        """A claim naming no run (a claimer died mid-write), or a run whose workspace is gone."""
        return not is_valid_id(owner) or not (self._root / owner).is_dir()

    def _take(self, uid: int, run: str) -> bool:
        """Claim ``uid`` for ``run``: free, already ``run``'s, or stale (then recovered)."""
        claim = self._dir / f"uid-{uid}"
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            owner = self._read(claim.name) or ""
            if owner == run:
                return True
            # Nothing of a stale claim's run may outlive the handover.
            if not self._is_stale(owner) or not kill_everything_of(uid):
                return False
            claim.unlink()
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(f"{run}\n")
        return True

    def claim(self, run: str) -> int:
        """The uid of ``run``'s sandbox: the one it holds, else a newly claimed one."""
        with self._locked():
            uid = self._recorded(run)
            if uid is None:
                # Start where the run's hash points, so a free uid is usually found at once.
                start = zlib.crc32(run.encode()) % self._span
                for step in range(self._span):
                    candidate = self._base + (start + step) % self._span
                    if self._take(candidate, run):
                        uid = candidate
                        break
                else:
                    raise SandboxError("no free sandbox uid: too many live sandboxes")
            record = self._dir / f"run-{run}"
            partial = record.with_name(f".{record.name}.new")
            partial.write_text(f"{uid}\n")
            partial.replace(record)
            return uid

    def uid_of(self, run: str) -> int | None:
        """The uid ``run``'s sandbox holds, if any."""
        with self._locked():
            return self._recorded(run)

    def release(self, run: str) -> None:
        """Give back ``run``'s uid (nothing happens when it holds none)."""
        with self._locked():
            uid = self._recorded(run)
            if uid is not None:
                (self._dir / f"uid-{uid}").unlink()
            (self._dir / f"run-{run}").unlink(missing_ok=True)
