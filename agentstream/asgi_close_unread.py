"""Tell clients to reconnect when a response leaves the request body unread.

A request refused before its body is read (bad credentials, a declared size over the limit) is
answered at once; uvicorn then closes the connection instead of draining the body, but without
saying so, and a keep-alive client that sends its next request on it gets a reset. Marking such
responses ``Connection: close`` makes the client open a fresh connection instead.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CloseUnreadBodyMiddleware:
    """Adds ``Connection: close`` to responses sent before the request body was consumed."""

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
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            return message

        async def marked_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done:
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"],
                    (b"connection", b"close"),
                ]
            await send(message)

        await self.app(scope, tracked_receive, marked_send)
