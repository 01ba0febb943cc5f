"""An HTTP/1.1 proxy that forwards a request, lets the upstream answer, then drops the client.

It reproduces the worst moment for a producer: its events were stored, but it never learns so
and must retry. ``drop_first`` responses to matching requests are swallowed, each by closing the
client connection without a byte of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx


class DroppingProxy:
    """Forwards to ``upstream``; drops the answer of the first ``drop_first`` POSTs."""

    def __init__(self, upstream: str, *, drop_first: int, path_suffix: str = "/chunk") -> None:
        self.upstream = upstream.rstrip("/")
        self.drop_first = drop_first
        self.path_suffix = path_suffix
        self.dropped = 0
        self.forwarded = 0
        self._client = httpx.AsyncClient(timeout=30.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                forward = {
                    k: v for k, v in headers.items() if k in ("authorization", "content-type")
                }
                response = await self._client.request(
                    method, self.upstream + path, content=body, headers=forward
                )
                self.forwarded += 1
                if (
                    method == "POST"
                    and path.endswith(self.path_suffix)
                    and self.dropped < self.drop_first
                    and response.status_code == 200
                ):
                    self.dropped += 1
                    writer.transport.abort()
                    return
                payload = response.content
                writer.write(
                    f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
                    f"content-type: {response.headers.get('content-type', 'text/plain')}\r\n"
                    f"content-length: {len(payload)}\r\n\r\n".encode("latin-1")
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the proxy's base URL."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            await server.wait_closed()
            await self._client.aclose()
