"""The completeness proof a run's terminal event carries.

A client that received every event of a run before its terminal one can recompute ``events`` and
``sha256`` from what it saw (each SSE event's ``id:`` and ``data:``), without trusting a replay
through the same server:

    h = 32 zero bytes
    for each event, in stream order:  h = SHA-256(h || id as 8 bytes big-endian || data)

``id`` is the event's ID (the SSE ``id``, see ``schemas.event_ids``), ``data`` its JSON bytes as
stored (the SSE ``data``, UTF-8). ``sha256`` is the final ``h`` in lowercase hex.
"""

from __future__ import annotations

import hashlib

import msgspec

GENESIS = bytes(32)


class Completeness(msgspec.Struct, kw_only=True, frozen=True):
    """How many events of the run came before its terminal event, and their chained hash."""

    events: int
    sha256: str


def chain(digest: bytes, event_id: int, data: bytes) -> bytes:
    """The running hash after one more event."""
    return hashlib.sha256(digest + event_id.to_bytes(8, "big") + data).digest()


class CompletenessTally:
    """Folds a run's events, in stream order, into its :class:`Completeness`."""

    def __init__(self) -> None:
        self.events = 0
        self.digest = GENESIS

    def add(self, event_id: int, data: bytes) -> None:
        """Account for the next event of the run."""
        self.events += 1
        self.digest = chain(self.digest, event_id, data)

    def proof(self) -> Completeness:
        """The proof over every event added so far."""
        return Completeness(events=self.events, sha256=self.digest.hex())
