"""agentstream.runtime.sandbox.uids: per-run uids unique among live sandboxes, across processes."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from agentstream.runtime.sandbox.base import SandboxError
from agentstream.runtime.sandbox.uids import UID_BASE, UID_SPAN, UidClaims

# crc32(run) % UID_SPAN is the same for both: the uid the sandbox used to derive from the run ID.
COLLIDING = ("run_uid_125", "run_uid_495")


def _claims(root: Path, *runs: str, span: int = UID_SPAN) -> UidClaims:
    for run in runs:
        (root / run).mkdir(parents=True)
    return UidClaims(root, span=span)


def test_runs_whose_hashes_collide_get_different_uids(tmp_path: Path) -> None:
    first, second = COLLIDING
    assert zlib.crc32(first.encode()) % UID_SPAN == zlib.crc32(second.encode()) % UID_SPAN
    claims = _claims(tmp_path, *COLLIDING)
    uids = {claims.claim(first), claims.claim(second)}
    assert len(uids) == 2
    assert all(UID_BASE <= uid < UID_BASE + UID_SPAN for uid in uids)


def test_a_claim_is_kept_until_released(tmp_path: Path) -> None:
    claims = _claims(tmp_path, "run_a", "run_b", span=1)
    uid = claims.claim("run_a")
    assert claims.claim("run_a") == uid, "claiming again returns the run's own uid"
    assert claims.uid_of("run_a") == uid
    with pytest.raises(SandboxError, match="no free sandbox uid"):
        claims.claim("run_b")
    claims.release("run_a")
    assert claims.uid_of("run_a") is None
    assert claims.claim("run_b") == uid
    claims.release("run_a")  # releasing what it no longer holds leaves run_b's claim alone
    assert claims.uid_of("run_b") == uid


def test_a_claim_whose_workspace_is_gone_is_taken_over(tmp_path: Path) -> None:
    claims = _claims(tmp_path, "run_a", "run_b", span=1)
    uid = claims.claim("run_a")
    (tmp_path / "run_a").rmdir()  # destroyed, but the release never happened
    assert claims.claim("run_b") == uid
    assert claims.uid_of("run_a") is None


def test_a_half_written_claim_is_taken_over(tmp_path: Path) -> None:
    claims = _claims(tmp_path, "run_a", span=1)
    (tmp_path / ".uids" / f"uid-{UID_BASE}").touch()  # a claimer died before naming its run
    assert claims.claim("run_a") == UID_BASE


def test_the_table_is_root_only(tmp_path: Path) -> None:
    _claims(tmp_path, "run_a").claim("run_a")
    assert (tmp_path / ".uids").stat().st_mode & 0o777 == 0o700


# argv: root, run ID prefix, how many runs, span of uids.
_CLAIMER = """
import sys
from pathlib import Path
from agentstream.runtime.sandbox.uids import UidClaims
root, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
claims = UidClaims(root, span=int(sys.argv[4]))
for i in range(count):
    (root / f"{prefix}{i}").mkdir()
    print(claims.claim(f"{prefix}{i}"), flush=True)
"""


def test_claims_made_by_concurrent_processes_are_unique(tmp_path: Path) -> None:
    processes, per_process = 4, 25
    span = processes * per_process  # every uid of the range gets taken: no room for luck
    UidClaims(tmp_path, span=span)
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, *map(str, (tmp_path, f"run_{p}_", per_process, span))],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    uids: list[int] = []
    for claimer in claimers:
        out, _ = claimer.communicate(timeout=60)
        assert claimer.returncode == 0
        uids += [int(line) for line in out.split()]
    assert sorted(uids) == list(range(UID_BASE, UID_BASE + span))
