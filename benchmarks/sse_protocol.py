"""One SSE stream read by an ``asyncio.Protocol``: the generator's per-delivery hot path.

A stream reader built on asyncio streams costs a future, a task step, a timeout handle and an
async generator per socket read; a fan-out bench makes one read per reader per event, so that
overhead, not the system under test, set the ceiling. Here a socket read is one
``data_received`` call that de-chunks the body, finds event boundaries with ``bytes`` methods
and hands each event's ``data`` bytes on: nothing is awaited per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

_MAX_HEAD_BYTES = 65_536

# Called once per socket read that brought body bytes, with the ``data`` of every event that
# read completed (none for a comment): the first call means the server has begun the body.
OnEvents = Callable[[list[bytes]], None]


class StreamRejected(Exception):
    """The server answered the stream request with something other than 200."""


class SseProtocol(asyncio.Protocol):
    """Sends ``request`` on connect, then passes the stream's events to ``on_events``.

    ``closed`` resolves when the connection ends: None if the server closed it, else the
    exception (``StreamRejected``, a broken body, a socket error).
    """

    def __init__(self, request: bytes, on_events: OnEvents) -> None:
        self._request = request
        self._on_events = on_events
        self._head = b""
        self._in_body = False
        self._chunked = False
        self._chunks = b""
        self._events = b""
        self._transport: asyncio.Transport | None = None
        self.reads = 0
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        """De-chunk, cut at event boundaries, pass the events on."""
        self.reads += 1
        try:
            if not self._in_body:
                body = self._take_head(data)
                if body is None:
                    return
                data = body
            if self._chunked:
                data = self._dechunk(data)
            if data:
                self._on_events(self._split(data))
        except (StreamRejected, ValueError) as exc:
            self._close(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """The server closed the stream or the socket broke."""
        if not self.closed.done():
            self.closed.set_result(exc)

    def close(self) -> None:
        """Leave the stream (the server sees the client go)."""
        if self._transport is not None:
            self._transport.close()

    def _close(self, outcome: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(outcome)
        self.close()

    def _take_head(self, data: bytes) -> bytes | None:
        """The body bytes after the response head, once the head is complete."""
        head = self._head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > _MAX_HEAD_BYTES:
                raise StreamRejected("response head too large")
            self._head = head
            return None
        self._head = b""
        status_line, _, fields = head[:end].partition(b"\r\n")
        if status_line[:9] not in (b"HTTP/1.1 ", b"HTTP/1.0 ") or status_line[9:12] != b"200":
            raise StreamRejected(status_line.decode("latin-1"))
        for field in fields.lower().split(b"\r\n"):
            name, _, value = field.partition(b":")
            if name.strip() == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
        self._in_body = True
        return head[end + 4 :]

    def _dechunk(self, data: bytes) -> bytes:
        """The payload of every chunk ``data`` completes (``Transfer-Encoding: chunked``).

        A chunk is passed on once whole: servers write an event, or a client's pending events,
        as one chunk, so a read usually holds exactly one and costs a find and two slices.
        """
        chunks = self._chunks + data if self._chunks else data
        payloads = []
        pos = 0
        while (eol := chunks.find(b"\r\n", pos)) >= 0:
            size = int(chunks[pos:eol].partition(b";")[0], 16)
            if size == 0:
                # The server ended the body (trailers, if any, do not matter).
                self._close(None)
                break
            start = eol + 2
            stop = start + size
            if stop + 2 > len(chunks):
                break
            if chunks[stop : stop + 2] != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            payloads.append(chunks[start:stop])
            pos = stop + 2
        else:
            if len(chunks) - pos > _MAX_HEAD_BYTES:
                raise ValueError("chunk size line too long")
        self._chunks = chunks[pos:]
        return payloads[0] if len(payloads) == 1 else b"".join(payloads)

    def _split(self, data: bytes) -> list[bytes]:
        """The ``data`` of each event ``data`` completes; the unfinished tail is kept."""
        events = self._events + data if self._events else data
        if b"\r" in events:
            events = _lf_only(events)
        end = events.rfind(b"\n\n")
        if end < 0:
            self._events = events
            return []
        self._events = events[end + 2 :]
        found = []
        for block in events[:end].split(b"\n\n"):
            # Fast path: the data is the block's one and last field (every server here writes
            # "id:", "event:", then "data:"); anything else takes the full line-by-line parse.
            at = block.find(b"data:")
            if at >= 0 and (at == 0 or block[at - 1] == 0x0A) and block.find(b"\n", at) < 0:
                found.append(block[at + 6 :] if block.startswith(b" ", at + 5) else block[at + 5 :])
                continue
            data_field = _parse_data(block)
            if data_field is not None:
                found.append(data_field)
        return found


def _lf_only(events: bytes) -> bytes:
    """``\\r\\n`` and lone ``\\r`` line ends as ``\\n``. A trailing ``\\r`` stays as it is: it
    may be the first half of a ``\\r\\n`` whose ``\\n`` has not arrived, and no event ends
    before the ``\\n`` does."""
    held = events.endswith(b"\r")
    body = events[:-1] if held else events
    body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return body + b"\r" if held else body


def _parse_data(block: bytes) -> bytes | None:
    """The joined ``data:`` lines of an event block, or None for a block without any (comments,
    ``retry:``)."""
    lines = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(lines) if lines else None
