"""Run-scoped bearer tokens: ``v1.<payload>.<hmac>``, signed with a shared secret.

The worker mints a callback token per run and attempt for the agent; the gateway's bridge
verifies it, so an agent can publish only to the run it was called for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Literal

import msgspec

# A conversation token's ``run`` claim holds the conversation's ID.
TokenKind = Literal["callback", "stream", "conversation"]


class TokenError(Exception):
    """A token that is malformed, forged, expired or for another purpose."""


class TokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a token grants."""

    kind: TokenKind
    run: str
    org: str
    attempt: int = 0
    exp: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def mint_token(secret: str, claims: TokenClaims) -> str:
    """Sign ``claims``."""
    payload = _b64(msgspec.json.encode(claims))
    return f"v1.{payload}.{_sign(secret, payload)}"


def verify_token(
    secret: str, token: str, kind: TokenKind, *, now: float | None = None
) -> TokenClaims:
    """The claims of a valid, unexpired token of ``kind``; otherwise :class:`TokenError`."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise TokenError("malformed token")
    _, payload, signature = parts
    # compare_digest: the time taken must not reveal how much of a forged signature matched.
    if not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
        raise TokenError("bad token signature")
    try:
        claims = msgspec.json.decode(_unb64(payload), type=TokenClaims)
    except (ValueError, msgspec.DecodeError):
        raise TokenError("malformed token") from None
    if claims.kind != kind:
        raise TokenError(f"not a {kind} token")
    if claims.exp < (time.time() if now is None else now):
        raise TokenError("token expired")
    return claims
