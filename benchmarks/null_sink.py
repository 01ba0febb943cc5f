"""The load generator's calibration target: the same two routes with nothing behind them.

A bare asyncio server, no framework, no NATS: ``POST /api/stream/{run}/chunk`` answers at once
and writes the body's events, SSE-framed, straight to the run's open streams; ``GET
/api/stream/{run}`` holds a stream open. What the generator achieves against it is its own
ceiling: a system measured near that figure is measured by the generator, not the system.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import msgspec

_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n: ready\n\n"
)
_HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


class NullSink:
    """Open streams by run, and the connection handler that serves both routes."""

    def __init__(self) -> None:
        self.streams: dict[str, set[asyncio.StreamWriter]] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: POSTs keep it alive, a stream holds it until the client
        leaves."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b" ", 2)
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                if method == b"POST":
                    self._forward(path.split(b"/")[3].decode(), body)
                    writer.write(_OK)
                elif path.startswith(b"/api/stream/"):
                    await self._hold(path[12:].split(b"?")[0].decode(), reader, writer)
                    return
                else:
                    writer.write(_HEALTHY)
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            writer.close()

    def _forward(self, run: str, body: bytes) -> None:
        events = _ARRAY.decode(body) if body.lstrip()[:1] == b"[" else [body]
        frames = b"".join(b"data: " + bytes(event) + b"\n\n" for event in events)
        for stream in self.streams.get(run, ()):
            stream.write(frames)

    async def _hold(
        self, run: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(_STREAM_HEAD)
        self.streams.setdefault(run, set()).add(writer)
        try:
            # The client never sends more: an empty read means it left.
            while await reader.read(1024):
                pass
        finally:
            self.streams[run].discard(writer)
            if not self.streams[run]:
                del self.streams[run]


async def _serve(host: str, port: int) -> None:
    sink = NullSink()
    server = await asyncio.start_server(sink.handle, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m benchmarks.null_sink --port P``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
