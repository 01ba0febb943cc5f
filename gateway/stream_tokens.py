"""Run-scoped, expiring tokens that let a browser's EventSource read one run, and the URLs the
gateway hands out for a run."""

from __future__ import annotations

import time
from typing import NamedTuple

from agentstream.runtime.http import Forbidden, Unauthorized
from agentstream.runtime.tokens import TokenClaims, TokenError, mint_token, verify_token
from gateway.state import GatewayState


class StreamAccess(NamedTuple):
    """A fresh stream token of a run, and its stream URL carrying it."""

    token: str
    url: str


def stream_access(gw: GatewayState, run: str, org: str) -> StreamAccess:
    """A token to stream ``run`` for the configured time, and the stream URL with it."""
    claims = TokenClaims(
        kind="stream", run=run, org=org, exp=int(time.time()) + gw.settings.stream_token_ttl_s
    )
    token = mint_token(gw.settings.callback_secret, claims)
    return StreamAccess(token, f"{_public_url(gw)}/api/stream/{run}?token={token}")


def conversation_access(gw: GatewayState, conversation: str, org: str) -> StreamAccess:
    """A token to stream ``org``'s ``conversation`` (every run of it) for the configured time,
    and the conversation's stream URL with it."""
    claims = TokenClaims(
        kind="conversation",
        run=conversation,
        org=org,
        exp=int(time.time()) + gw.settings.stream_token_ttl_s,
    )
    token = mint_token(gw.settings.callback_secret, claims)
    url = f"{_public_url(gw)}/api/conversations/{conversation}/stream?token={token}"
    return StreamAccess(token, url)


def verify_conversation_token(gw: GatewayState, token: str, conversation: str) -> TokenClaims:
    """The claims of a valid token for ``conversation``: 401 if invalid, 403 if for another."""
    try:
        claims = verify_token(gw.settings.callback_secret, token, "conversation")
    except TokenError as exc:
        raise Unauthorized(f"conversation token: {exc}") from None
    if claims.run != conversation:
        raise Forbidden("the conversation token is for another conversation")
    return claims


def run_url(gw: GatewayState, run: str) -> str:
    """Where ``run``'s status and result are read."""
    return f"{_public_url(gw)}/api/runs/{run}"


def _public_url(gw: GatewayState) -> str:
    return gw.settings.public_url.rstrip("/")


def verify_stream_token(gw: GatewayState, token: str, run: str) -> TokenClaims:
    """The claims of a valid token for ``run``: 401 if invalid, 403 if for another run."""
    try:
        claims = verify_token(gw.settings.callback_secret, token, "stream")
    except TokenError as exc:
        raise Unauthorized(f"stream token: {exc}") from None
    if claims.run != run:
        raise Forbidden("the stream token is for another run")
    return claims
