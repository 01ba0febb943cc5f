"""Raw ASGI routes, served before any of FastAPI: its middleware, routing and dependency solving.

A callback-bridge post is a few microseconds of the gateway's own work; FastAPI's routing,
dependency solving and request/response wrappers cost several times that per request (py-spy,
``make bench`` ingest). An SSE stream would hold a dozen coroutine frames and closures of
FastAPI's middleware for the connection's whole life, a third of what an idle stream cost
(tracemalloc, 1,000 idle streams). A route served here is matched on method and path and handed
the raw ASGI call, with its path's named parts in ``scope["path_params"]`` (where Starlette puts
them); every other request goes through FastAPI unchanged, and FastAPI's OpenAPI document still
describes these routes (``operations``).

A handler served here owns everything: its errors (``raw_asgi.send_error``) and any body it
refuses unread (wrapped in ``CloseUnreadBodyMiddleware``, it drains it as FastAPI's routes do).
The paths of these routes belong to them: another method gets the 405 FastAPI gave, and a
trailing slash the redirect its router gave.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.raw_asgi import send_json
from schemas import ErrorBody, encode


class RawRoute:
    """One route: a method, a path pattern with named groups, a handler and its OpenAPI text."""

    def __init__(
        self, method: str, path: str, pattern: str, handler: ASGIApp, operation: dict[str, Any]
    ) -> None:
        self.method = method
        # The path as OpenAPI writes it, e.g. ``/api/stream/{run}/chunk``.
        self.path = path
        self.pattern = re.compile(pattern)
        self.handler = handler
        self.operation = operation


def operations(routes: Sequence[RawRoute]) -> dict[str, dict[str, Any]]:
    """The OpenAPI ``paths`` entries of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation
    return paths


class FrontRoutedApp(FastAPI):
    """FastAPI, with ``front_routes`` matched (on method and path) ahead of everything else.

    ``outermost`` wraps the whole of it, front routes included (FastAPI's own middleware runs
    only for the requests FastAPI routes): e.g. CORS, whose preflight a front route's path must
    answer too.
    """

    def __init__(
        self,
        *,
        front_routes: Sequence[RawRoute],
        outermost: Callable[[ASGIApp], ASGIApp] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.front_routes = tuple(front_routes)
        self._entry: ASGIApp = self._dispatch if outermost is None else outermost(self._dispatch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._find(scope) if scope["type"] == "http" else None
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        # Only the handler and the request stay referenced while it runs (an SSE stream: for as
        # long as the client stays).
        await handler(scope, receive, send)

    def _find(self, scope: Scope) -> ASGIApp | None:
        """The handler of a request on a front path (its parameters put in the scope)."""
        path: str = scope["path"]
        allowed: list[str] = []
        for route in self.front_routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if scope["method"] == route.method:
                scope["path_params"] = match.groupdict()
                return route.handler
            allowed.append(route.method)
        if allowed:
            return functools.partial(_method_not_allowed, ", ".join(allowed))
        trimmed = path.rstrip("/")
        if path != "/" and trimmed != path and self._owns(trimmed):
            return functools.partial(_redirect, trimmed)
        return None

    def _owns(self, path: str) -> bool:
        return any(route.pattern.fullmatch(path) for route in self.front_routes)


async def _method_not_allowed(allow: str, scope: Scope, receive: Receive, send: Send) -> None:
    body = encode(ErrorBody(error="http_405", detail="Method Not Allowed"))
    await send_json(send, 405, body, {"Allow": allow})


async def _redirect(path: str, scope: Scope, receive: Receive, send: Send) -> None:
    url = URL(scope={**scope, "path": path})
    await RedirectResponse(str(url))(scope, receive, send)
