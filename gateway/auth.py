"""Who is calling: API keys (stored hashed, each bound to an org) or JWTs (org from a claim).

With neither configured the gateway runs open, as the local stack does, and says so at start.
Stream access is separate: a run-scoped stream token (browsers' EventSource cannot send headers)
or a caller of the run's org.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable

import jwt
import msgspec
from fastapi import Request

from agentstream.runtime.http import Forbidden, NotFound, Unauthorized, Unavailable
from gateway.settings import GatewaySettings
from schemas import RunView, is_valid_id

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="agentstream"'}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller. ``org`` None means open mode: any org may be named."""

    key: str
    org: str | None


def hash_api_key(key: str) -> str:
    """How API keys are configured: the hex SHA-256 of the key, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(raw: str) -> dict[str, str]:
    """``org:sha256hex,org:sha256hex`` into hash → org."""
    keys: dict[str, str] = {}
    for position, item in enumerate(raw.split(","), start=1):
        if not item.strip():
            continue
        org, sep, digest = item.strip().partition(":")
        if not sep or not is_valid_id(org) or not _SHA256_HEX.fullmatch(digest):
            # Name the item by position only: its text may be a key hash (or the key itself).
            raise ValueError(f"API_KEYS item {position} must be org:<sha256 hex of the key>")
        keys[digest.lower()] = org
    return keys


class Authenticator:
    """Checks API keys and JWTs as the settings configure them."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._keys = parse_api_keys(settings.api_keys)
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None

    @property
    def open(self) -> bool:
        """No authentication configured: the local stack's mode."""
        s = self._settings
        return not (self._keys or s.jwt_hs256_secret or s.jwt_public_key or s.jwt_jwks_url)

    @property
    def jwt_enabled(self) -> bool:
        """Whether JWTs are accepted."""
        s = self._settings
        return bool(s.jwt_hs256_secret or s.jwt_public_key or s.jwt_jwks_url)

    async def principal(self, request: Request) -> Principal:
        """The caller, or 401. In open mode, anyone, keyed by address for the limits."""
        if self.open:
            host = request.client.host if request.client else "unknown"
            return Principal(key=f"ip:{host}", org=None)
        bearer = parse_bearer(request.headers.get("authorization"))
        if bearer is None:
            raise Unauthorized(
                "an API key or JWT is required: Authorization: Bearer …", headers=_CHALLENGE
            )
        if self.jwt_enabled and bearer.count(".") == 2:
            return await self._from_jwt(bearer)
        return self._from_api_key(bearer)

    async def optional_principal(self, request: Request) -> Principal | None:
        """The caller if it presented credentials (used where a stream token also works)."""
        if self.open or parse_bearer(request.headers.get("authorization")) is None:
            return None
        return await self.principal(request)

    def _from_api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        org: str | None = None
        # Every configured hash is compared, in constant time, whatever matches.
        for known, known_org in self._keys.items():
            if hmac.compare_digest(known, digest):
                org = known_org
        if org is None:
            raise Unauthorized("unknown API key", headers=_CHALLENGE)
        return Principal(key=f"key:{digest[:16]}", org=org)

    async def _from_jwt(self, token: str) -> Principal:
        s = self._settings
        try:
            if s.jwt_hs256_secret:
                key: object = s.jwt_hs256_secret
                algorithms = ["HS256"]
            elif s.jwt_public_key:
                key, algorithms = s.jwt_public_key, ["RS256"]
            else:
                assert self._jwks is not None
                # PyJWKClient fetches (and caches) the key set with blocking I/O.
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key, algorithms = signing.key, ["RS256"]
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.PyJWKClientConnectionError:
            raise Unavailable("the JWT key set cannot be fetched, retry") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}", headers=_CHALLENGE) from None
        org = claims.get(s.jwt_org_claim)
        if not isinstance(org, str) or not is_valid_id(org):
            raise Forbidden(f"the token's {s.jwt_org_claim!r} claim names no valid org")
        subject = str(claims.get("sub", ""))[:64]
        return Principal(key=f"jwt:{org}:{subject}", org=org)


def require_org(principal: Principal, org: str) -> None:
    """Refuse a caller acting on another org's runs."""
    if principal.org is not None and principal.org != org:
        raise Forbidden("this run belongs to another organisation")


async def own_run(
    principal: Principal, run: str, find: Callable[[str], Awaitable[RunView | None]]
) -> RunView:
    """``run`` as ``find`` looks it up, if ``principal`` may act on it: 404 for a run it does
    not know, 403 for another org's."""
    view = await find(run)
    if view is None:
        raise NotFound(f"unknown run {run}")
    require_org(principal, view.org)
    return view


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case), None
    without the header; 401 for any other value."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be: Bearer <token>", headers=_CHALLENGE)
    return value.strip()
