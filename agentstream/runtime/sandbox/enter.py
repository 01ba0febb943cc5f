"""Enter a sandbox command's confinement, then exec it. Run as a program, never imported.

``python -I -S enter.py CONFIG_JSON PROGRAM ARG...``. The local sandbox starts every command
through this small program instead of a ``preexec_fn``, which is unsafe in a process that runs
threads (the agent service does). Here the new process is single-threaded, so it may unshare
namespaces, mount, set limits and drop privileges before it execs the command. It uses the
standard library only, since it runs with ``-I -S``.

In order:

1. namespaces: a mount namespace, and a network namespace with no interfaces when asked; both
   inside a user namespace when not root (mapping the caller's own uid, so files stay its own);
2. a private mount view: a private tmpfs on /tmp, also shown at /var/tmp and /dev/shm; the
   sandbox root replaced by an empty tmpfs holding only this run's workspace; every other mount
   read-only. The workspace is then the only place on disk the command can write;
3. no new privileges (setuid binaries grant nothing), resource limits, and the run's own uid
   when one is given (root service);
4. exec the program in the workspace.

A failure before exec is written to the status fd (close-on-exec, so it reads empty once the
exec happened) and ends the process with :data:`SETUP_FAILED`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import sys
from typing import Any

SETUP_FAILED = 125

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21

# A bind remount must repeat the mount's locked flags (inside a user namespace it fails
# otherwise), so they are read back with statvfs and carried over.
_KEPT_FLAGS = {
    os.ST_NOSUID: _MS_NOSUID,
    os.ST_NODEV: _MS_NODEV,
    os.ST_NOEXEC: _MS_NOEXEC,
    os.ST_NOATIME: _MS_NOATIME,
    os.ST_NODIRATIME: _MS_NODIRATIME,
    os.ST_RELATIME: _MS_RELATIME,
}

_PR_SET_NO_NEW_PRIVS = 38

# The machine-wide scratch places a command would otherwise share with every other process.
_SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A confinement step failed; the command must not run."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _remount(target: str, extra: int) -> None:
    kept = os.statvfs(target).f_flag
    flags = extra
    for st_flag, ms_flag in _KEPT_FLAGS.items():
        if kept & st_flag:
            flags |= ms_flag
    _mount(None, target, None, _MS_REMOUNT | _MS_BIND | flags)


def _enter_namespaces(*, mount_view: bool, isolate_network: bool) -> None:
    flags = (_CLONE_NEWNS if mount_view else 0) | (_CLONE_NEWNET if isolate_network else 0)
    if not flags:
        return
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        # Without root, a user namespace grants the capabilities for the rest; mapping the
        # caller's own ids keeps files owned as before, and the command, not root in the
        # namespace, loses those capabilities when it execs.
        flags |= _CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if uid != 0:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)


def _is_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _mount_points() -> list[str]:
    """Where something is mounted in this namespace, each place once."""
    with open("/proc/self/mountinfo", "rb") as file:
        lines = file.read().splitlines()
    seen: dict[str, None] = {}
    for line in lines:
        escaped = os.fsdecode(line.split()[4])
        # mountinfo escapes space, tab, newline and backslash as octal.
        seen[re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), escaped)] = None
    return list(seen)


def _make_private_view(workspace: str | None, root: str | None, tmp_bytes: int) -> None:
    """Only the workspace and a private /tmp stay writable; other runs' workspaces vanish."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Opened now, in this namespace (a bind must come from a mount of the namespace), and before
    # the tmpfs mounts below can hide it.
    workspace_fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY) if workspace else None
    temp_dirs = [os.path.realpath(d) for d in _SHARED_TEMP_DIRS if _is_dir(d)]
    writable = set(temp_dirs)
    if temp_dirs:
        first, *others = temp_dirs
        tmpfs_flags = _MS_NOSUID | _MS_NODEV
        _mount("tmpfs", first, "tmpfs", tmpfs_flags, f"size={tmp_bytes},mode=1777")
        for other in others:
            _mount(first, other, None, _MS_BIND)
    if workspace is not None and workspace_fd is not None and root is not None:
        if any(os.path.commonpath([root, d]) == d for d in temp_dirs):
            # The root was under a temp dir, now a fresh tmpfs of this process: only the path
            # down to the workspace is needed there.
            os.makedirs(workspace, mode=0o755, exist_ok=True)
        else:
            _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=755")
            os.mkdir(workspace, 0o755)
        _mount(f"/proc/self/fd/{workspace_fd}", workspace, None, _MS_BIND)
        _remount(workspace, _MS_NOSUID | _MS_NODEV)
        os.close(workspace_fd)
        writable.add(workspace)
    for point in _mount_points():
        if point in writable:
            continue
        try:
            if os.statvfs(point).f_flag & os.ST_RDONLY:
                continue
            _remount(point, _MS_RDONLY)
        except (FileNotFoundError, PermissionError):
            # Hidden under a mount made above, or beyond a folder this uid cannot enter (nor
            # can the command, which runs as the same uid without capabilities).
            continue


def _drop_privileges(limits: dict[str, int], uid: int | None) -> None:
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _enter(config: dict[str, Any]) -> None:
    workspace: str | None = config["workspace"]
    _enter_namespaces(mount_view=config["mount_view"], isolate_network=config["isolate_network"])
    if config["mount_view"]:
        _make_private_view(workspace, config["root"], config["tmp_bytes"])
    _drop_privileges(config["limits"], config["uid"])
    if workspace is not None:
        try:
            os.chdir(workspace)
        except PermissionError:
            raise SetupError(
                f"the run's uid cannot reach its workspace {workspace}: every folder above "
                "the sandbox root must be traversable by other users (o+x)"
            ) from None
    tmp = os.environ.get("TMPDIR")
    if tmp:
        # It exists, or the command removed its place: programs then fall back to /tmp.
        with contextlib.suppress(OSError):
            os.mkdir(tmp, 0o700)


def main() -> None:
    """Confine this process as the config in argv[1] says, then exec argv[2:]."""
    config = json.loads(sys.argv[1])
    status_fd: int = config["status_fd"]
    os.set_inheritable(status_fd, False)
    # Folders made on the way to the workspace must be traversable by the run's uid.
    os.umask(0o022)
    try:
        _enter(config)
        os.execv(sys.argv[2], sys.argv[2:])
    except Exception as exc:  # whatever failed, the command must not run, and the caller learns why
        os.write(status_fd, f"sandbox setup failed: {exc}".encode())
        os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main()
