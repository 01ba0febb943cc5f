"""The README's completeness recipe, written out for the tests rather than imported from the
product, so a bug in the product's hashing cannot also hide itself in the check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def expected_proof(events: Iterable[tuple[int, bytes]]) -> tuple[int, str]:
    """``(events, sha256)`` over ``(id, data)`` pairs in stream order."""
    count, digest = 0, bytes(32)
    for event_id, data in events:
        count += 1
        digest = hashlib.sha256(digest + event_id.to_bytes(8, "big") + data).digest()
    return count, digest.hex()
