"""Run-scoped, expiring tokens that let a browser's EventSource read one run, and the URLs the
gateway hands out for a run."""

from __future__ import annotations

import time
from typing import NamedTuple

from agentstream.runtime.http import Forbidden, Unauthorized
from agentstream.runtime.tokens import TokenClaims, TokenError, TokenKind, mint_token, verify_token
from gateway.state import GatewayState


class StreamAccess(NamedTuple):
    """A fresh stream token of a run, and its stream URL carrying it."""

    token: str
    url: str


def stream_access(gw: GatewayState, run: str, org: str) -> StreamAccess:
    """A token to stream ``run`` for the configured time, and the stream URL with it."""
    token = _mint(gw, "stream", run, org)
    return StreamAccess(token, f"{_public_url(gw)}/api/stream/{run}?token={token}")


def conversation_access(gw: GatewayState, conversation: str, org: str) -> StreamAccess:
    """A token to stream ``org``'s ``conversation`` (every run of it) for the configured time,
    and the conversation's stream URL with it."""
    token = _mint(gw, "conversation", conversation, org)
    url = f"{_public_url(gw)}/api/conversations/{conversation}/stream?token={token}"
    return StreamAccess(token, url)


def verify_conversation_token(gw: GatewayState, token: str, conversation: str) -> TokenClaims:
    """The claims of a valid token for ``conversation``: 401 if invalid, 403 if for another."""
    return _verify(gw, token, "conversation", conversation, "conversation")


def verify_stream_token(gw: GatewayState, token: str, run: str) -> TokenClaims:
    """The claims of a valid token for ``run``: 401 if invalid, 403 if for another run."""
    return _verify(gw, token, "stream", run, "run")


def _mint(gw: GatewayState, kind: TokenKind, subject: str, org: str) -> str:
    """A token of ``kind`` for ``org``'s ``subject``, valid for the configured time."""
    exp = int(time.time()) + gw.settings.stream_token_ttl_s
    return mint_token(
        gw.settings.callback_secret, TokenClaims(kind=kind, run=subject, org=org, exp=exp)
    )


def _verify(gw: GatewayState, token: str, kind: TokenKind, subject: str, noun: str) -> TokenClaims:
    """The claims of a valid token of ``kind`` for ``subject`` (a ``noun``): 401 if invalid,
    403 if for another."""
    try:
        claims = verify_token(gw.settings.callback_secret, token, kind)
    except TokenError as exc:
        raise Unauthorized(f"{kind} token: {exc}") from None
    if claims.run != subject:
        raise Forbidden(f"the {kind} token is for another {noun}")
    return claims


def run_url(gw: GatewayState, run: str) -> str:
    """Where ``run``'s status and result are read."""
    return f"{_public_url(gw)}/api/runs/{run}"


def _public_url(gw: GatewayState) -> str:
    return gw.settings.public_url.rstrip("/")
