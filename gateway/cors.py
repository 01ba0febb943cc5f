"""Cross-origin access for pages served elsewhere (a Next.js app using ``useChat``, an AG-UI
client): ``CORS_ALLOW_ORIGINS`` names the origins; none named, no CORS header is ever sent and
nothing is added to any request's path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

# What a browser page sends beyond the simple headers: credentials (API key, JWT), JSON bodies,
# a run's idempotency key, and a stream's resume point.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID")
# What a page may read of an answer: when to retry, and the AI SDK stream's protocol header.
EXPOSED_HEADERS = ("Retry-After", "x-vercel-ai-ui-message-stream")
# How long a browser may reuse a preflight's answer.
_PREFLIGHT_MAX_AGE_S = 600


def cross_origin(origins: Sequence[str]) -> Callable[[ASGIApp], ASGIApp] | None:
    """A wrapper answering CORS preflights and marking answers for ``origins`` (``*``: any),
    or None when there are none. Credentials travel in the ``Authorization`` header, never
    in cookies, so no answer allows credentials."""
    if not origins:
        return None

    def wrap(app: ASGIApp) -> ASGIApp:
        return CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            max_age=_PREFLIGHT_MAX_AGE_S,
        )

    return wrap
