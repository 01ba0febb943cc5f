"""The load generator's calibration target: the same two routes with nothing behind them.

An asyncio protocol on uvloop, no framework, no NATS: ``POST /api/stream/{run}/chunk`` answers
at once and writes the body's events, SSE-framed, straight to the run's open streams; ``GET
/api/stream/{run}`` holds a stream open. What the generator achieves against it is its own
ceiling: a system measured near that figure is measured by the generator, not the system.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

import msgspec
import uvloop

_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n: ready\n\n"
)
_HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


class NullSink:
    """The open streams of every run."""

    def __init__(self) -> None:
        self.streams: dict[bytes, set[asyncio.Transport]] = {}

    def forward(self, run: bytes, body: bytes) -> None:
        """The events of a posted body, SSE-framed, to every open stream of ``run``."""
        events = _ARRAY.decode(body) if body.lstrip()[:1] == b"[" else [body]
        frames = b"".join(b"data: " + bytes(event) + b"\n\n" for event in events)
        for stream in self.streams.get(run, ()):
            stream.write(frames)


class _Connection(asyncio.Protocol):
    """One client connection: keep-alive POSTs, or a stream held until the client leaves.

    A protocol rather than asyncio streams: a post costs one callback here, not a task step
    per read, so the sink stays far cheaper than anything measured against it.
    """

    def __init__(self, sink: NullSink) -> None:
        self._sink = sink
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._stream_of: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to answer on."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Serve every complete request received so far (a stream's client sends no more)."""
        if self._stream_of is not None or self._transport is None:
            return
        buffer = self._buffer + data if self._buffer else data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            method, path, _ = head.split(b" ", 2)
            if method == b"POST":
                self._sink.forward(path.split(b"/")[3], body)
                self._transport.write(_OK)
            elif path.startswith(b"/api/stream/"):
                self._stream_of = path[12:].split(b"?")[0]
                self._transport.write(_STREAM_HEAD)
                self._sink.streams.setdefault(self._stream_of, set()).add(self._transport)
                return
            else:
                self._transport.write(_HEALTHY)
                self._transport.close()
                return
        self._buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        """A stream's client left: stop writing to it."""
        run = self._stream_of
        if run is not None and self._transport is not None:
            streams = self._sink.streams[run]
            streams.discard(self._transport)
            if not streams:
                del self._sink.streams[run]


async def _serve(host: str, port: int) -> None:
    sink = NullSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(sink), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m benchmarks.null_sink --port P``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
