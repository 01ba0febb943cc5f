"""A FastAPI app that serves some raw ASGI routes before any of its own middleware.

``gateway.asgi_routes.RawRoutes`` skips FastAPI's routing and dependency solving; a route served
here also skips the middleware stack around it (error, telemetry and body-limit wrappers,
``CloseUnreadBodyMiddleware``). For a short request that is a few frames; for an SSE stream it is
a dozen coroutine frames and closures held for the connection's whole life, a third of what an
idle stream cost (tracemalloc, 1,000 idle streams). A handler served here owns everything: its
errors (``asgi_routes.send_error``) and any body it does not read.

The paths of these routes belong to them: another method gets the 405 FastAPI gave, and a
trailing slash the redirect its router gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.types import Receive, Scope, Send

from gateway.asgi_routes import RawHandler, RawRoute, send_json
from schemas import ErrorBody, encode


class FrontRoutedApp(FastAPI):
    """FastAPI, with ``front_routes`` matched (on method and path) ahead of everything else."""

    def __init__(self, *, front_routes: Sequence[RawRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front_routes = tuple(front_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._find(scope) if scope["type"] == "http" else None
        if found is None:
            await super().__call__(scope, receive, send)
            return
        # Only the handler and its arguments stay referenced while it runs (an SSE stream: for
        # as long as the client stays).
        handler, params = found
        await handler(scope, receive, send, params)

    def _find(self, scope: Scope) -> tuple[RawHandler, dict[str, str]] | None:
        path: str = scope["path"]
        allowed: list[str] = []
        for route in self.front_routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if scope["method"] == route.method:
                return route.handler, match.groupdict()
            allowed.append(route.method)
        if allowed:
            return _method_not_allowed, {"allow": ", ".join(allowed)}
        trimmed = path.rstrip("/")
        if path != "/" and trimmed != path and self._owns(trimmed):
            return _redirect, {"path": trimmed}
        return None

    def _owns(self, path: str) -> bool:
        return any(route.pattern.fullmatch(path) for route in self.front_routes)


async def _method_not_allowed(
    scope: Scope, receive: Receive, send: Send, params: dict[str, str]
) -> None:
    body = encode(ErrorBody(error="http_405", detail="Method Not Allowed"))
    await send_json(send, 405, body, {"Allow": params["allow"]})


async def _redirect(scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> None:
    url = URL(scope={**scope, "path": params["path"]})
    await RedirectResponse(str(url))(scope, receive, send)
