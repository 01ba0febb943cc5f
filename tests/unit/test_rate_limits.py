"""A model provider's 429 is told apart from the other errors an agent attempt can end with."""

from __future__ import annotations

import httpx
import openai

from agent.rate_limits import DEFAULT_RETRY_AFTER_S, provider_rate_limit


def _openai_error(status: int, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx.Request("POST", "https://api.example/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    error_type = openai.RateLimitError if status == 429 else openai.InternalServerError
    return error_type("refused", response=response, body=None)


class _OtherProvidersError(Exception):
    """An SDK error that carries its HTTP status, as most providers' SDKs do."""

    status_code = 429


def test_openais_rate_limit_waits_what_the_provider_says() -> None:
    assert provider_rate_limit(_openai_error(429, {"retry-after": "7"})) == 7.0


def test_a_rate_limit_without_retry_after_waits_the_default() -> None:
    assert provider_rate_limit(_openai_error(429, {})) == DEFAULT_RETRY_AFTER_S


def test_a_rate_limit_wrapped_by_the_agent_framework_is_found() -> None:
    try:
        try:
            raise _openai_error(429, {"retry-after": "3"})
        except openai.RateLimitError as exc:
            raise RuntimeError("model call failed") from exc
    except RuntimeError as wrapped:
        assert provider_rate_limit(wrapped) == 3.0


def test_another_providers_429_is_a_rate_limit() -> None:
    assert provider_rate_limit(_OtherProvidersError()) == DEFAULT_RETRY_AFTER_S


def test_other_errors_are_not_rate_limits() -> None:
    assert provider_rate_limit(_openai_error(500, {"retry-after": "7"})) is None
    assert provider_rate_limit(ValueError("bad tool input")) is None
