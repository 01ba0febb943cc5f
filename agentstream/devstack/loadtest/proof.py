"""Checks what one reader received against the run's completeness proof.

The hash is written out here on purpose rather than imported from ``schemas``: a check that
reuses the server's code would agree with the server's bugs. The contract (README, "Completeness
proof"): ``h = 32 zero bytes``; for each event before the terminal one, in stream order,
``h = SHA-256(h || seq as 8 bytes big-endian || data)``; the terminal event carries
``completeness: {"events": <count>, "sha256": <hex of h>}``.

Besides the proof it counts what a reader can see by itself: an ID received twice (duplicate) and
an ID lower than one already received (reordered).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field


class Verdict(enum.StrEnum):
    """How a reader's events compare with its run's proof."""

    OK = "ok"
    # The terminal event carries no proof (or an unreadable one): nothing vouches for the events.
    MISSING = "proof missing"
    # Fewer or more events than the proof counts.
    COUNT = "count differs"
    # As many events, but not the same ones (altered, swapped or replaced).
    HASH = "hash differs"
    # The stream never reached its terminal event.
    NO_TERMINAL = "no terminal"
    # The stream broke the SSE contract itself (an event without an ID, a malformed ID).
    MALFORMED = "malformed stream"


@dataclass(frozen=True, slots=True)
class Claim:
    """What a terminal event says about the events before it."""

    events: int
    sha256: str


def claim_of(terminal_data: bytes) -> Claim | None:
    """The ``completeness`` of a terminal event's JSON, or None if it has none."""
    try:
        body = json.loads(terminal_data)
        proof = body.get("completeness") if isinstance(body, dict) else None
        if not isinstance(proof, dict):
            return None
        events, digest = proof.get("events"), proof.get("sha256")
    except ValueError:
        return None
    if not isinstance(events, int) or not isinstance(digest, str):
        return None
    return Claim(events=events, sha256=digest.lower())


@dataclass(slots=True)
class ProofCheck:
    """Folds one reader's events (across all its connections) and judges them at the end."""

    digest: bytes = bytes(32)
    events: int = 0
    duplicates: int = 0
    reordered: int = 0
    malformed: bool = False
    last_id: int = 0
    seen: set[int] = field(default_factory=set)

    def add(self, event_id: int | None, data: bytes) -> bool:
        """Account for a non-terminal event; False if it must not count (duplicate, no ID)."""
        if event_id is None:
            self.malformed = True
            return False
        if event_id in self.seen:
            self.duplicates += 1
            return False
        if event_id < self.last_id:
            # Folded in anyway: the proof then fails too, and says so as a hash mismatch.
            self.reordered += 1
        self.last_id = max(self.last_id, event_id)
        self.seen.add(event_id)
        self.events += 1
        self.digest = hashlib.sha256(self.digest + event_id.to_bytes(8, "big") + data).digest()
        return True

    def verdict(self, claim: Claim | None, *, terminal_seen: bool) -> Verdict:
        """The judgement once the reader stopped."""
        if self.malformed:
            return Verdict.MALFORMED
        if not terminal_seen:
            return Verdict.NO_TERMINAL
        if claim is None:
            return Verdict.MISSING
        if claim.events != self.events:
            return Verdict.COUNT
        if claim.sha256 != self.digest.hex():
            return Verdict.HASH
        return Verdict.OK

    def lost(self, claim: Claim | None) -> int:
        """Events the proof counts that this reader never got (0 without a proof)."""
        return max(0, claim.events - self.events) if claim is not None else 0
