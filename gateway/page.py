"""The browser page: ``/`` and the files it loads from ``/static/`` (``gateway/static``), read
once at import.

Every answer carries a Content-Security-Policy that lets only these files run, style and connect
to this origin: the page renders the model's text as DOM nodes, never as HTML, and the policy is
the second lock should that ever slip. ``Referrer-Policy: no-referrer`` keeps the stream tokens
in the page's URLs from leaving with a link the model wrote.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response

from agentstream.runtime.http import NotFound

_STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_FILES: dict[str, tuple[bytes, str]] = {
    path.name: (path.read_bytes(), _TYPES[path.suffix])
    for path in sorted(_STATIC.iterdir())
    if path.suffix in _TYPES
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Small files, read at start-up: a browser asks again rather than keep a stale page.
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        raise NotFound(f"no file {name} in the page's static files")
    body, media_type = found
    return Response(body, media_type=media_type, headers=_HEADERS)


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files at ``/static/{name}``."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        """The browser client: a conversation with the agent, streamed as it runs."""
        return _file("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        """One of the page's scripts or style sheets."""
        return _file(name)
