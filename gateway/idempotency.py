"""``Idempotency-Key``: a client that retries ``POST /api/messages`` gets the same run.

The key names the run: its ID is derived from (org, key), so every replica and every concurrent
duplicate computes the same workflow ID, and Temporal, which refuses a second workflow with an
ID it still knows, decides which start wins. Keys are scoped per org (the tenant; an org's
principals can read each other's runs anyway) and honoured while Temporal retains the run.
"""

from __future__ import annotations

import hashlib
import re

from agentstream.runtime.http import BadRequest
from schemas import PostMessage, encode

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Workflow memo key: what the run was started for, so a reuse for another request is refused.
REQUEST_FINGERPRINT_MEMO = "request_fingerprint"

# Visible ASCII, as the keys clients generate (UUIDs, ULIDs, hashes) are.
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


def checked_key(raw: str) -> str:
    """The header's key, or a 400 naming what is wrong with it."""
    if _KEY_RE.fullmatch(raw) is None:
        raise BadRequest(
            f"{IDEMPOTENCY_KEY_HEADER} must be 1 to 255 visible ASCII characters (e.g. a UUID)"
        )
    return raw


def idempotent_run_id(org: str, key: str) -> str:
    """The run ID ``key`` stands for in ``org``: the same on every replica, for every retry."""
    digest = hashlib.sha256(f"{org}\n{key}".encode()).hexdigest()
    # 160 bits: collisions between keys are out of reach; the ID stays a valid subject token.
    return f"run_{digest[:40]}"


def request_fingerprint(org: str, body: PostMessage) -> str:
    """What the request asked for, whatever its JSON spelling (key order, whitespace)."""
    return hashlib.sha256(org.encode() + b"\n" + encode(body)).hexdigest()
