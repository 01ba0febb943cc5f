"""Raw ASGI requests and answers, for the routes served ahead of FastAPI (``gateway.front_routes``).

A header or a bounded body read straight off the ASGI call, and JSON answers written to it. Errors
keep the one JSON error shape (``agentstream.runtime.http``); a dependency's outage (``OUTAGES``)
is a 503 here and in FastAPI's handlers alike.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from starlette.types import Receive, Scope, Send
from temporalio.service import RPCError

from agentstream.runtime.http import BadRequest, PayloadTooLarge, ServiceError, Unavailable
from agentstream.runtime.metrics import LIMIT_HITS, LIMIT_HITS_HELP
from agentstream.runtime.nats_contract import AppendBusy
from agentstream.runtime.run_history import HistoryUnavailable
from schemas import ID_PATTERN, ErrorBody, encode, is_valid_id

# A dependency that is down or restarting: a 503 the caller may retry, not a 500.
OUTAGES: tuple[type[Exception], ...] = (
    nats.errors.Error,
    AppendBusy,
    HistoryUnavailable,
    RPCError,
    asyncio.TimeoutError,
)

log = logging.getLogger(__name__)


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


def path_id(scope: Scope, name: str) -> str:
    """The ID the request's path names as ``name``; 400 for anything but an ID."""
    value: str = scope["path_params"][name]
    if not is_valid_id(value):
        raise BadRequest(f"path.{name}: String should match pattern '{ID_PATTERN}'")
    return value


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
        body = encode(exc.body())
        await send_json(send, exc.status, body, exc.headers)
        return
    log.exception("unhandled error", exc_info=exc)
    await send_json(send, 500, encode(ErrorBody(error="internal_error", detail="")))
