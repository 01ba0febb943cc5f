"""Run-scoped, expiring tokens that let a browser's EventSource read one run."""

from __future__ import annotations

import time

from agentstream.runtime.http import Forbidden, Unauthorized
from agentstream.runtime.tokens import TokenClaims, TokenError, mint_token, verify_token
from gateway.state import GatewayState


def mint_stream_token(gw: GatewayState, run: str, org: str) -> str:
    """A token to stream ``run`` for the configured time."""
    claims = TokenClaims(
        kind="stream", run=run, org=org, exp=int(time.time()) + gw.settings.stream_token_ttl_s
    )
    return mint_token(gw.settings.callback_secret, claims)


def verify_stream_token(gw: GatewayState, token: str, run: str) -> TokenClaims:
    """The claims of a valid token for ``run``: 401 if invalid, 403 if for another run."""
    try:
        claims = verify_token(gw.settings.callback_secret, token, "stream")
    except TokenError as exc:
        raise Unauthorized(f"stream token: {exc}") from None
    if claims.run != run:
        raise Forbidden("the stream token is for another run")
    return claims
