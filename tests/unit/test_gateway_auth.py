"""gateway.auth: open mode, hashed API keys, JWTs (HS256, RS256 by PEM or JWKS), org checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request

from agentstream.runtime.http import Forbidden, Unauthorized
from gateway.auth import (
    Authenticator,
    Principal,
    hash_api_key,
    parse_api_keys,
    parse_bearer,
    require_org,
)
from gateway.settings import GatewaySettings

KEY_A = "key-a"
KEY_B = "key-b"
HASH_A = hashlib.sha256(KEY_A.encode()).hexdigest()
HASH_B = hashlib.sha256(KEY_B.encode()).hexdigest()
API_KEYS = f"acme:{HASH_A},globex:{HASH_B}"

# At least 32 bytes: PyJWT warns (InsecureKeyLengthWarning) about shorter HMAC keys.
SECRET = "hs256-secret-for-tests-0123456789abcdef"
OTHER_SECRET = "another-hs256-secret-for-tests-0123456789"
CHALLENGE = 'Bearer realm="agentstream"'


# --- helpers -------------------------------------------------------------------------------


def _request(authorization: str | None = None) -> Request:
    headers: list[tuple[bytes, bytes]] = []
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": headers,
            "client": ("127.0.0.1", 1234),
            "query_string": b"",
        }
    )


def _bearer(token: str) -> Request:
    return _request(f"Bearer {token}")


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "user-1", "org": "acme", "exp": int(time.time()) + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses to use a PEM public key as an HMAC key)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}."


async def _expect_401(auth: Authenticator, request: Request) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await auth.principal(request)
    assert info.value.status == 401
    assert info.value.headers == {"WWW-Authenticate": CHALLENGE}
    return info.value


async def _expect_403(auth: Authenticator, request: Request) -> Forbidden:
    with pytest.raises(Forbidden) as info:
        await auth.principal(request)
    assert info.value.status == 403
    return info.value


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


# --- open mode -----------------------------------------------------------------------------


async def test_open_mode_without_header_keys_the_caller_by_address() -> None:
    auth = Authenticator(GatewaySettings())
    assert auth.open is True
    assert auth.jwt_enabled is False
    assert await auth.principal(_request()) == Principal(key="ip:127.0.0.1", org=None)


async def test_open_mode_ignores_a_bearer_token() -> None:
    auth = Authenticator(GatewaySettings())
    principal = await auth.principal(_bearer("anything-at-all"))
    assert principal == Principal(key="ip:127.0.0.1", org=None)


async def test_open_mode_optional_principal_is_none() -> None:
    auth = Authenticator(GatewaySettings())
    assert await auth.optional_principal(_bearer("anything")) is None


# --- API keys ------------------------------------------------------------------------------


def test_hash_api_key_is_the_hex_sha256_of_the_key() -> None:
    assert hash_api_key("key-a") == HASH_A
    assert hash_api_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_api_keys_maps_each_hash_to_its_org() -> None:
    assert parse_api_keys(API_KEYS) == {HASH_A: "acme", HASH_B: "globex"}


def test_parse_api_keys_ignores_blanks_and_whitespace_and_lowercases_hashes() -> None:
    raw = f" acme:{HASH_A.upper()} , ,globex:{HASH_B},"
    assert parse_api_keys(raw) == {HASH_A: "acme", HASH_B: "globex"}
    assert parse_api_keys("") == {}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(f"a.b:{HASH_A}", id="org-with-dot"),
        pytest.param(f":{HASH_A}", id="empty-org"),
        pytest.param(f"acme:{HASH_A[:40]}", id="short-hash"),
        pytest.param(f"acme:{HASH_A}0", id="long-hash"),
        pytest.param(f"acme:{HASH_A},globex:{HASH_B[:63]}", id="second-item-bad"),
    ],
)
def test_parse_api_keys_rejects_malformed_items_without_echoing_the_hash(raw: str) -> None:
    with pytest.raises(ValueError, match=r"API_KEYS item \d+ must be org:<sha256 hex") as info:
        parse_api_keys(raw)
    message = str(info.value)
    for digest in (HASH_A, HASH_A[:40], HASH_B[:63]):
        assert digest not in message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(HASH_A, id="hash-alone"),
        pytest.param(f"acme={HASH_A}", id="wrong-separator"),
    ],
)
def test_parse_api_keys_without_colon_does_not_echo_the_hash(raw: str) -> None:
    with pytest.raises(ValueError, match=r"API_KEYS item \d+ must be") as info:
        parse_api_keys(raw)
    assert HASH_A not in str(info.value)


def test_parse_api_keys_rejects_a_non_hex_digest() -> None:
    with pytest.raises(ValueError):
        parse_api_keys("acme:" + "z" * 64)


def test_authenticator_refuses_malformed_api_keys_config() -> None:
    with pytest.raises(ValueError):
        Authenticator(GatewaySettings(api_keys=f"acme:{HASH_A[:10]}"))


async def test_api_key_resolves_to_its_org_without_exposing_the_key() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    assert auth.open is False
    assert auth.jwt_enabled is False
    principal = await auth.principal(_bearer(KEY_A))
    assert principal.org == "acme"
    assert principal.key.startswith("key:")
    assert KEY_A not in principal.key
    assert principal.key == f"key:{HASH_A[:16]}"
    other = await auth.principal(_bearer(KEY_B))
    assert other.org == "globex"
    assert other.key != principal.key


async def test_api_key_scheme_is_case_insensitive() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    assert (await auth.principal(_request(f"bearer {KEY_A}"))).org == "acme"


async def test_unknown_api_key_is_401_with_challenge() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    error = await _expect_401(auth, _bearer("key-c"))
    assert "key-c" not in str(error)


async def test_missing_authorization_header_is_401_with_challenge() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    await _expect_401(auth, _request())


@pytest.mark.parametrize("header", ["Basic x", "Bearer ", "Bearer", "Bearer    ", KEY_A, ""])
async def test_malformed_authorization_header_is_401(header: str) -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    await _expect_401(auth, _request(header))


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), (None, None)],
)
def test_parse_bearer_reads_the_token_whatever_the_scheme_case(
    header: str | None, token: str | None
) -> None:
    assert parse_bearer(header) == token


@pytest.mark.parametrize("header", ["Basic x", "Bearer ", "Bearer", "Bearerabc", "abc", ""])
def test_parse_bearer_refuses_any_other_value_with_a_challenge(header: str) -> None:
    with pytest.raises(Unauthorized) as info:
        parse_bearer(header)
    assert info.value.headers == {"WWW-Authenticate": CHALLENGE}


async def test_optional_principal_is_none_without_credentials_and_checks_them_when_sent() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS))
    assert await auth.optional_principal(_request()) is None
    principal = await auth.optional_principal(_bearer(KEY_A))
    assert principal is not None and principal.org == "acme"
    with pytest.raises(Unauthorized):
        await auth.optional_principal(_bearer("nope"))


# --- HS256 JWTs ----------------------------------------------------------------------------


@pytest.fixture
def hs256() -> Authenticator:
    return Authenticator(GatewaySettings(jwt_hs256_secret=SECRET))


async def test_hs256_token_resolves_to_its_org_claim(hs256: Authenticator) -> None:
    assert hs256.open is False
    assert hs256.jwt_enabled is True
    principal = await hs256.principal(_bearer(_hs256(_claims())))
    assert principal == Principal(key="jwt:acme:user-1", org="acme")


async def test_hs256_token_with_custom_org_claim() -> None:
    auth = Authenticator(GatewaySettings(jwt_hs256_secret=SECRET, jwt_org_claim="tenant"))
    token = _hs256(_claims(org="wrong", tenant="globex"))
    assert (await auth.principal(_bearer(token))).org == "globex"
    # The default claim is not consulted once another is configured.
    await _expect_403(auth, _bearer(_hs256(_claims(org="acme"))))


async def test_expired_token_is_401(hs256: Authenticator) -> None:
    token = _hs256(_claims(exp=int(time.time()) - 3_600))
    error = await _expect_401(hs256, _bearer(token))
    assert "expired" in str(error).lower()


async def test_token_with_wrong_signature_is_401(hs256: Authenticator) -> None:
    await _expect_401(hs256, _bearer(_hs256(_claims(), OTHER_SECRET)))


async def test_tampered_token_is_401(hs256: Authenticator) -> None:
    header, _, signature = _hs256(_claims()).split(".")
    forged_payload = _b64url(json.dumps(_claims(org="globex")).encode())
    await _expect_401(hs256, _bearer(f"{header}.{forged_payload}.{signature}"))


async def test_token_without_exp_is_401(hs256: Authenticator) -> None:
    await _expect_401(hs256, _bearer(_hs256(_claims(exp=None))))


@pytest.mark.parametrize(
    "org",
    [
        pytest.param(None, id="missing"),
        pytest.param("a.b", id="dot"),
        pytest.param("runs.*", id="wildcard"),
        pytest.param("", id="empty"),
        pytest.param("x" * 65, id="too-long"),
        pytest.param(42, id="not-a-string"),
    ],
)
async def test_missing_or_invalid_org_claim_is_403(hs256: Authenticator, org: object) -> None:
    await _expect_403(hs256, _bearer(_hs256(_claims(org=org))))


async def test_alg_none_token_is_401(hs256: Authenticator) -> None:
    await _expect_401(hs256, _bearer(_unsigned(_claims())))


async def test_garbage_token_with_two_dots_is_401(hs256: Authenticator) -> None:
    await _expect_401(hs256, _bearer("not.a.jwt"))


async def test_audience_is_enforced_when_configured() -> None:
    auth = Authenticator(GatewaySettings(jwt_hs256_secret=SECRET, jwt_audience="agentstream"))
    assert (await auth.principal(_bearer(_hs256(_claims(aud="agentstream"))))).org == "acme"
    await _expect_401(auth, _bearer(_hs256(_claims(aud="someone-else"))))
    await _expect_401(auth, _bearer(_hs256(_claims())))


async def test_audience_is_ignored_when_not_configured(hs256: Authenticator) -> None:
    assert (await hs256.principal(_bearer(_hs256(_claims(aud="anything"))))).org == "acme"


async def test_issuer_is_enforced_when_configured() -> None:
    auth = Authenticator(
        GatewaySettings(jwt_hs256_secret=SECRET, jwt_issuer="https://issuer.example")
    )
    token = _hs256(_claims(iss="https://issuer.example"))
    assert (await auth.principal(_bearer(token))).org == "acme"
    await _expect_401(auth, _bearer(_hs256(_claims(iss="https://evil.example"))))
    await _expect_401(auth, _bearer(_hs256(_claims())))


async def test_api_keys_and_jwts_work_side_by_side() -> None:
    auth = Authenticator(GatewaySettings(api_keys=API_KEYS, jwt_hs256_secret=SECRET))
    assert (await auth.principal(_bearer(KEY_B))).org == "globex"
    assert (await auth.principal(_bearer(_hs256(_claims())))).org == "acme"
    await _expect_401(auth, _bearer("unknown-key"))


# --- RS256 with a configured public key ----------------------------------------------------


async def test_rs256_token_verified_with_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = Authenticator(GatewaySettings(jwt_public_key=_public_pem(rsa_key)))
    assert auth.jwt_enabled is True
    principal = await auth.principal(_bearer(_rs256(_claims(org="globex"), rsa_key)))
    assert principal == Principal(key="jwt:globex:user-1", org="globex")


async def test_rs256_token_signed_by_another_key_is_401(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    auth = Authenticator(GatewaySettings(jwt_public_key=_public_pem(rsa_key)))
    await _expect_401(auth, _bearer(_rs256(_claims(), other_rsa_key)))


async def test_hs256_token_is_401_when_only_rs256_is_configured(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = _public_pem(rsa_key)
    auth = Authenticator(GatewaySettings(jwt_public_key=pem))
    # The classic algorithm confusion: HMAC keyed with the public key the server holds.
    await _expect_401(auth, _bearer(_forge_hs256(_claims(), pem.encode())))
    await _expect_401(auth, _bearer(_hs256(_claims())))


async def test_rs256_expired_token_is_401(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = Authenticator(GatewaySettings(jwt_public_key=_public_pem(rsa_key)))
    await _expect_401(auth, _bearer(_rs256(_claims(exp=int(time.time()) - 60), rsa_key)))


async def test_alg_none_token_is_401_with_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = Authenticator(GatewaySettings(jwt_public_key=_public_pem(rsa_key)))
    await _expect_401(auth, _bearer(_unsigned(_claims())))


# --- RS256 via JWKS ------------------------------------------------------------------------

KID = "test-key-1"


class _JWKSServer:
    """A real HTTP server on 127.0.0.1 serving one JWKS document and counting fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.fetches = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def jwks_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[_JWKSServer]:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    server = _JWKSServer({"keys": [jwk]})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def jwks_auth(jwks_server: _JWKSServer) -> Authenticator:
    return Authenticator(GatewaySettings(jwt_jwks_url=jwks_server.url))


async def test_jwks_token_with_known_kid_is_accepted(
    jwks_auth: Authenticator, jwks_server: _JWKSServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert jwks_auth.open is False
    assert jwks_auth.jwt_enabled is True
    before = jwks_server.fetches
    token = _rs256(_claims(org="globex"), rsa_key, kid=KID)
    assert await jwks_auth.principal(_bearer(token)) == Principal(
        key="jwt:globex:user-1", org="globex"
    )
    assert jwks_server.fetches > before
    # The key set is cached: a second token needs no further fetch.
    fetched = jwks_server.fetches
    assert (await jwks_auth.principal(_bearer(token))).org == "globex"
    assert jwks_server.fetches == fetched


async def test_jwks_token_with_unknown_kid_is_401(
    jwks_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    await _expect_401(jwks_auth, _bearer(_rs256(_claims(), rsa_key, kid="no-such-key")))


async def test_jwks_token_signed_by_another_key_with_known_kid_is_401(
    jwks_auth: Authenticator, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    await _expect_401(jwks_auth, _bearer(_rs256(_claims(), other_rsa_key, kid=KID)))


async def test_jwks_hs256_token_with_known_kid_is_401(
    jwks_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = _public_pem(rsa_key)
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64url(json.dumps(_claims()).encode())
    signature = hmac.new(pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await _expect_401(jwks_auth, _bearer(f"{header}.{payload}.{_b64url(signature)}"))


async def test_jwks_token_with_invalid_org_is_403(
    jwks_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    await _expect_403(jwks_auth, _bearer(_rs256(_claims(org="a.b"), rsa_key, kid=KID)))


# --- require_org ---------------------------------------------------------------------------


def test_require_org_allows_the_principals_own_org() -> None:
    require_org(Principal(key="key:abc", org="acme"), "acme")


def test_require_org_refuses_another_org() -> None:
    with pytest.raises(Forbidden) as info:
        require_org(Principal(key="key:abc", org="acme"), "globex")
    assert info.value.status == 403


@pytest.mark.parametrize("org", ["acme", "globex", "default"])
def test_require_org_lets_an_open_principal_act_on_any_org(org: str) -> None:
    require_org(Principal(key="ip:127.0.0.1", org=None), org)
