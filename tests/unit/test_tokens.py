"""agentstream.runtime.tokens: signed, run-scoped bearer tokens."""

from __future__ import annotations

import base64
import time

import msgspec
import pytest

from agentstream.runtime.tokens import TokenClaims, TokenError, mint_token, verify_token

SECRET = "s3cret-for-tests"
EXP = 2_000_000_000
CLAIMS = TokenClaims(kind="callback", run="run_1", org="acme", attempt=2, exp=EXP)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_mint_then_verify_returns_the_claims() -> None:
    token = mint_token(SECRET, CLAIMS)
    assert token.startswith("v1.")
    assert verify_token(SECRET, token, "callback", now=EXP - 1) == CLAIMS


def test_token_valid_exactly_at_expiry() -> None:
    token = mint_token(SECRET, CLAIMS)
    assert verify_token(SECRET, token, "callback", now=EXP) == CLAIMS


def test_verify_uses_wall_clock_when_now_not_given() -> None:
    fresh = TokenClaims(kind="stream", run="r", org="o", exp=int(time.time()) + 60)
    assert verify_token(SECRET, mint_token(SECRET, fresh), "stream") == fresh
    stale = TokenClaims(kind="stream", run="r", org="o", exp=int(time.time()) - 60)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, mint_token(SECRET, stale), "stream")


def test_expired_token_is_rejected() -> None:
    token = mint_token(SECRET, CLAIMS)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, "callback", now=EXP + 1)


def test_token_signed_with_another_secret_is_rejected() -> None:
    token = mint_token("other-secret", CLAIMS)
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, token, "callback", now=0)


def test_forged_signature_is_rejected() -> None:
    version, payload, signature = mint_token(SECRET, CLAIMS).split(".")
    forged = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, f"{version}.{payload}.{forged}", "callback", now=0)


def test_tampered_payload_with_original_signature_is_rejected() -> None:
    version, _, signature = mint_token(SECRET, CLAIMS).split(".")
    other_run = msgspec.structs.replace(CLAIMS, run="run_someone_else")
    payload = _b64(msgspec.json.encode(other_run))
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, f"{version}.{payload}.{signature}", "callback", now=0)


def test_token_of_another_kind_is_rejected() -> None:
    token = mint_token(SECRET, CLAIMS)
    with pytest.raises(TokenError, match="not a stream token"):
        verify_token(SECRET, token, "stream", now=0)


def test_validly_signed_garbage_payload_is_malformed() -> None:
    # Signed with the right secret, but the payload is not claims: still TokenError, no crash.
    from agentstream.runtime.tokens import _sign

    for payload in [_b64(b"not json"), _b64(b'{"kind": "callback"}'), "!!!", ""]:
        token = f"v1.{payload}.{_sign(SECRET, payload)}"
        with pytest.raises(TokenError, match="malformed"):
            verify_token(SECRET, token, "callback", now=0)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.",
        "v1.a",
        "v2.a.b",
        "v1.a.b",
        "v1.a.b.c",
        "v1.%%%%.$$$$",
        "v1.not-base64!.also not",
        "..",
        "Bearer v1.a.b",
    ],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, token, "callback", now=0)


def test_other_version_of_a_valid_token_is_rejected() -> None:
    _, payload, signature = mint_token(SECRET, CLAIMS).split(".")
    with pytest.raises(TokenError, match="malformed"):
        verify_token(SECRET, f"v2.{payload}.{signature}", "callback", now=0)


@pytest.mark.parametrize("token", ["v1.a.é", "v1.a.\u00ff", "v1.payload.sig\u2603"])
def test_non_ascii_signature_is_rejected_as_token_error(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, token, "callback", now=0)
