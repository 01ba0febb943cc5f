"""Telling a model provider's rate limit (HTTP 429) apart from the other ways an attempt fails.

A rate limit means "busy, retry later": the worker retries the attempt with backoff and never
counts it as a failure, so the agent reports it with its own error code instead of a 500.
"""

from __future__ import annotations

import openai

from agentstream.runtime.http import parse_retry_after

# When the provider does not say how long to wait.
DEFAULT_RETRY_AFTER_S = 5.0


def provider_rate_limit(exc: BaseException) -> float | None:
    """Seconds to wait if ``exc`` (or an error it was raised from) is a provider's 429, else None.

    OpenAI's SDK (and the OpenAI-compatible servers behind it) raise ``RateLimitError``; other
    providers' SDKs carry the HTTP status as ``status_code``, which is read as a fallback.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(current, "status_code", None)
        if isinstance(current, openai.RateLimitError) or status == 429:
            response = getattr(current, "response", None)
            headers = getattr(response, "headers", None)
            waited = parse_retry_after(headers.get("retry-after")) if headers is not None else None
            return waited if waited is not None else DEFAULT_RETRY_AFTER_S
        current = current.__cause__ or current.__context__
    return None
