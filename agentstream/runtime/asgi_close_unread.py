"""Answer refused requests cleanly when their body was never read.

A request refused before its body is read (bad credentials, a declared size over the limit) is
answered at once. If the client is still uploading, closing the connection resets it before it
reads the answer; keeping it open without draining leaves the rest of the body where the next
request should be. So the unread rest is drained, up to a bound, before the answer goes out;
past that bound the answer says ``Connection: close`` and the connection is dropped.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Enough for any body the services accept plus an oversize one a client is already sending.
_DRAIN_LIMIT = 4 * 1024 * 1024
_DRAIN_TIMEOUT_S = 5.0


class CloseUnreadBodyMiddleware:
    """Drains (bounded) or closes when a response starts before the body was consumed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        has_body = b"transfer-encoding" in headers or (declared.isdigit() and int(declared) > 0)
        body_done = not has_body

        async def tracked_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def drain() -> bool:
            drained = 0
            try:
                async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                    while drained <= _DRAIN_LIMIT:
                        message = await tracked_receive()
                        drained += len(message.get("body", b""))
                        if body_done:
                            return bool(message["type"] == "http.request")
            except TimeoutError:
                pass
            return False

        async def answering_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done and not await drain():
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"],
                    (b"connection", b"close"),
                ]
            await send(message)

        await self.app(scope, tracked_receive, answering_send)
