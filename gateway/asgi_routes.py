"""The gateway's hottest routes, served as plain ASGI ahead of FastAPI's router.

A callback-bridge post is a few microseconds of the gateway's own work; FastAPI's routing,
dependency solving and request/response wrappers cost several times that per request (py-spy,
``make bench`` ingest). Routes registered here are matched on method and path before any of it
and handed the raw ASGI call; every other request goes through FastAPI unchanged. Their errors
keep the one JSON error shape (``agentstream.runtime.http``), and FastAPI's OpenAPI document still
describes them (``operations``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.service import RPCError

from agentstream.runtime.http import BadRequest, PayloadTooLarge, ServiceError, Unavailable
from agentstream.runtime.metrics import LIMIT_HITS, LIMIT_HITS_HELP
from agentstream.runtime.run_history import HistoryUnavailable
from schemas import ErrorBody, encode

# A dependency that is down or restarting: a 503 the caller may retry, not a 500.
OUTAGES: tuple[type[Exception], ...] = (
    nats.errors.Error,
    HistoryUnavailable,
    RPCError,
    asyncio.TimeoutError,
)

log = logging.getLogger(__name__)

# The handler's arguments: the ASGI call, and the path's named parts.
RawHandler = Callable[[Scope, Receive, Send, dict[str, str]], Awaitable[None]]


class RawRoute:
    """One route: a method, a path pattern with named groups, a handler and its OpenAPI text."""

    def __init__(
        self, method: str, path: str, pattern: str, handler: RawHandler, operation: dict[str, Any]
    ) -> None:
        self.method = method
        # The path as OpenAPI writes it, e.g. ``/api/stream/{run}/chunk``.
        self.path = path
        self.pattern = re.compile(pattern)
        self.handler = handler
        self.operation = operation


class RawRoutes:
    """ASGI middleware: serves its routes itself, passes everything else on."""

    def __init__(self, app: ASGIApp, routes: list[RawRoute]) -> None:
        self.app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._routes:
                if scope["method"] == route.method:
                    found = route.pattern.fullmatch(scope["path"])
                    if found is not None:
                        await route.handler(scope, receive, send, found.groupdict())
                        return
        await self.app(scope, receive, send)


def operations(routes: list[RawRoute]) -> dict[str, dict[str, Any]]:
    """The OpenAPI ``paths`` entries of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation
    return paths


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON response."""
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    if headers:
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class ClientGone(Exception):
    """The client disconnected before its request was read: nothing to answer."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower case), as Starlette reads it."""
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = header(scope, b"content-length")
    if declared is not None:
        # isascii: str.isdigit also accepts the superscript digits latin-1 decodes to.
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("content-length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", limit="body_size")
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", limit="body_size")
        if not message.get("more_body", False):
            return body


async def send_error(send: Send, scope: Scope, exc: Exception) -> None:
    """The JSON error answer for ``exc``: its own status for a ``ServiceError``, a 503 for an
    outage (``OUTAGES``), else a 500."""
    if isinstance(exc, ClientGone):
        return
    if isinstance(exc, OUTAGES):
        log.warning("dependency unavailable: %r", exc)
        exc = Unavailable("a backing service is unavailable, retry", headers={"Retry-After": "1"})
    if isinstance(exc, ServiceError):
        gateway = scope.get("state", {}).get("gateway")
        if exc.limit is not None and gateway is not None:
            gateway.metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit=exc.limit)
        body = encode(ErrorBody(error=exc.code, detail=exc.detail))
        await send_json(send, exc.status, body, exc.headers)
        return
    log.exception("unhandled error", exc_info=exc)
    await send_json(send, 500, encode(ErrorBody(error="internal_error", detail="")))
