"""Just enough HTTP/1.1 over asyncio streams for the load generator: one request per connection.

A general client (httpx) costs several layers of Python per received chunk; the generator reads
hundreds of event streams at once on the same cores as the system under test, so its hot path is
a socket read and a ``bytes.find``. Requests say ``Connection: close``: each SSE read holds its
connection for the run anyway, and a POST's connection is cheap on the paths this drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

_MAX_HEAD_BYTES = 65_536
_MAX_BODY_BYTES = 4 * 1_048_576
_READ_SIZE = 65_536


class HttpError(Exception):
    """The connection broke, timed out, or the server answered something unreadable."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a server listens: scheme, host and port of a base URL, and its path prefix."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """``http(s)://host[:port][/prefix]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        return cls(
            host=parts.hostname,
            port=parts.port or (443 if tls else 80),
            tls=tls,
            prefix=parts.path.rstrip("/"),
        )

    @property
    def host_header(self) -> str:
        """The ``Host`` header value."""
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


class Response:
    """A response's status and headers; its body is read from the still open connection."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer

    def close(self) -> None:
        """Drop the connection (the server sees the client leave)."""
        self._writer.close()

    async def chunks(self, idle_timeout_s: float) -> AsyncIterator[bytes]:
        """The body as it arrives, de-chunked; raises ``HttpError`` if nothing comes for
        ``idle_timeout_s`` or the connection breaks mid-body. Ends when the body ends."""
        reader = self._reader
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    async with asyncio.timeout(idle_timeout_s):
                        size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0], 16)
                    if size == 0:
                        return
                    async with asyncio.timeout(idle_timeout_s):
                        chunk = await reader.readexactly(size + 2)
                    yield chunk[:-2]
            elif "content-length" in self.headers:
                remaining = int(self.headers["content-length"])
                while remaining > 0:
                    async with asyncio.timeout(idle_timeout_s):
                        chunk = await reader.read(min(remaining, _READ_SIZE))
                    if not chunk:
                        raise HttpError("connection closed inside the body")
                    remaining -= len(chunk)
                    yield chunk
            else:
                while True:
                    async with asyncio.timeout(idle_timeout_s):
                        chunk = await reader.read(_READ_SIZE)
                    if not chunk:
                        return
                    yield chunk
        except TimeoutError:
            raise HttpError(f"nothing received for {idle_timeout_s:g}s") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise HttpError(f"broken body: {exc!r}") from None
        except OSError as exc:
            raise HttpError(f"connection broke: {exc!r}") from None

    async def read(self, timeout_s: float) -> bytes:
        """The whole (bounded) body."""
        body = bytearray()
        async for chunk in self.chunks(timeout_s):
            body += chunk
            if len(body) > _MAX_BODY_BYTES:
                raise HttpError("response body too large")
        return bytes(body)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once: loading the CA store per connection would dominate a TLS run's CPU.
    return ssl.create_default_context()


@contextlib.asynccontextmanager
async def request(
    origin: Origin,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout_s: float,
) -> AsyncIterator[Response]:
    """Send one request and yield its response once the head arrived; the connection closes
    when the block ends. Raises ``HttpError`` on connection failure or timeout."""
    lines = [
        f"{method} {origin.prefix}{path} HTTP/1.1",
        f"Host: {origin.host_header}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=_tls_context() if origin.tls else None,
                limit=_MAX_HEAD_BYTES,
            )
            writer.write(head + body)
            await writer.drain()
            raw_head = await reader.readuntil(b"\r\n\r\n")
        status, response_headers = _parse_head(raw_head)
    except TimeoutError:
        if writer is not None:
            writer.close()
        raise HttpError(f"no answer within {timeout_s:g}s") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        if writer is not None:
            writer.close()
        raise HttpError(f"{method} {path.split('?', 1)[0]}: {exc!r}") from None
    try:
        yield Response(status, response_headers, reader, writer)
    finally:
        writer.close()


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
