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
from collections.abc import AsyncGenerator, AsyncIterator
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

    async def chunks(self, idle_timeout_s: float) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, de-chunked, one piece per socket read; raises ``HttpError``
        if nothing comes for ``idle_timeout_s`` or the connection breaks mid-body."""
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        remaining = None if chunked else _content_length(self.headers)
        dechunker = Dechunker() if chunked else None
        reader = self._reader
        try:
            while remaining is None or remaining > 0:
                async with asyncio.timeout(idle_timeout_s):
                    block = await reader.read(_READ_SIZE)
                if not block:
                    if dechunker is None and remaining is None:
                        return
                    raise HttpError("connection closed inside the body")
                if dechunker is not None:
                    payload = dechunker.feed(block)
                    if payload:
                        yield payload
                    if dechunker.finished:
                        return
                    continue
                if remaining is not None:
                    block = block[:remaining]
                    remaining -= len(block)
                yield block
        except TimeoutError:
            raise HttpError(f"nothing received for {idle_timeout_s:g}s") from None
        except ValueError as exc:
            raise HttpError(f"broken body: {exc}") from None
        except OSError as exc:
            raise HttpError(f"connection broke: {exc!r}") from None

    async def read(self, timeout_s: float) -> bytes:
        """The whole (bounded) body."""
        body = bytearray()
        async with contextlib.aclosing(self.chunks(timeout_s)) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > _MAX_BODY_BYTES:
                    raise HttpError("response body too large")
        return bytes(body)


def _content_length(headers: dict[str, str]) -> int | None:
    """The declared body length; None means "until the connection closes"."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise HttpError(f"bad Content-Length {raw!r}")
    return int(raw)


class Dechunker:
    """Decodes ``Transfer-Encoding: chunked`` from blocks of any size, without a read per chunk
    (servers send an SSE event per chunk: a read each would double the cost per event)."""

    def __init__(self) -> None:
        self._buffer = b""
        # Payload bytes still due in the current chunk; then its CRLF; None: a size line next.
        self._due: int | None = None
        self.finished = False

    def feed(self, block: bytes) -> bytes:
        """The payload bytes ``block`` completes; raises ``ValueError`` on a malformed body."""
        data = self._buffer + block if self._buffer else block
        out: list[bytes] = []
        pos = 0
        while not self.finished:
            if self._due is None:
                end = data.find(b"\r\n", pos)
                if end < 0:
                    if len(data) - pos > _MAX_HEAD_BYTES:
                        raise ValueError("chunk size line too long")
                    break
                size_text = data[pos:end].split(b";", 1)[0].strip()
                size = int(size_text, 16)
                if size < 0:
                    raise ValueError(f"bad chunk size {size_text!r}")
                pos = end + 2
                if size == 0:
                    # Trailers, if any, are not read: the body is complete.
                    self.finished = True
                    break
                self._due = size
            elif self._due > 0:
                piece = data[pos : pos + self._due]
                if not piece:
                    break
                out.append(piece)
                pos += len(piece)
                self._due -= len(piece)
            else:
                if len(data) - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                pos += 2
                self._due = None
        self._buffer = data[pos:]
        return b"".join(out)


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
