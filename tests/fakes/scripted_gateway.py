"""A stand-in gateway that streams scripted runs, faithfully or with one fault on purpose.

It answers ``POST /api/messages`` and ``GET /api/stream/{run}`` (honouring ``Last-Event-ID``)
the way the real gateway does on the wire, and its terminal event carries a completeness proof
over the run's true events. A fault then makes the stream differ from what the proof vouches
for, so a load test can be shown to catch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections.abc import AsyncIterator

from schemas.completeness import CompletenessTally

HOST = "127.0.0.1"
EVENTS_PER_RUN = 12
# The event the faults act on (by position in the run).
FAULTY_EVENT = 6


class Fault(enum.StrEnum):
    """What the stand-in does wrong."""

    NONE = "none"
    # The event is never sent.
    LOSE = "lose"
    # The event is sent with other data than the proof covers.
    ALTER = "alter"
    # The event is sent twice.
    REPEAT = "repeat"
    # The terminal event carries no proof.
    NO_PROOF = "no_proof"
    # Not a stream fault: the first POST of each Idempotency-Key is answered 429.
    THROTTLE = "throttle"


class ScriptedGateway:
    """Serves runs ``run_0``, ``run_1``… each of :data:`EVENTS_PER_RUN` events and a ``done``."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        # Idempotency-Key → run, and how many POSTs carried each key.
        self.runs_by_key: dict[str, str] = {}
        self.posts_by_key: dict[str, int] = {}

    def _events(self, run: str) -> list[tuple[int, bytes]]:
        # Sequences interleave as a shared stream's would: each run's are not contiguous.
        index = int(run.removeprefix("run_"))
        return [
            (
                1 + index + 1000 * n,
                json.dumps({"type": "token", "run": run, "text": f"t{n}"}).encode(),
            )
            for n in range(EVENTS_PER_RUN)
        ]

    def _frames(self, run: str, after: int) -> list[bytes]:
        events = self._events(run)
        tally = CompletenessTally()
        for seq, data in events:
            tally.add(seq, data)
        proof = tally.proof()
        frames = []
        for position, (seq, data) in enumerate(events):
            if seq <= after:
                continue
            sent = data
            if position == FAULTY_EVENT:
                if self.fault == Fault.LOSE:
                    continue
                if self.fault == Fault.ALTER:
                    sent = data.replace(b'"t', b'"T')
            frame = b"id: %d\r\nevent: token\r\ndata: %s\r\n\r\n" % (seq, sent)
            frames.append(frame)
            if position == FAULTY_EVENT and self.fault == Fault.REPEAT:
                frames.append(frame)
        completeness = (
            None
            if self.fault == Fault.NO_PROOF
            else {"events": proof.events, "sha256": proof.sha256}
        )
        done = json.dumps({"type": "done", "run": run, "completeness": completeness})
        frames.append(b"id: %d\r\nevent: done\r\ndata: %s\r\n\r\n" % (10**6, done.encode()))
        return frames

    def _post(self, key: str) -> bytes:
        self.posts_by_key[key] = self.posts_by_key.get(key, 0) + 1
        if self.fault == Fault.THROTTLE and self.posts_by_key[key] == 1:
            return b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
        run = self.runs_by_key.setdefault(key, f"run_{len(self.runs_by_key)}")
        body = json.dumps({"workflow_id": run, "stream_token": "t"}).encode()
        return (
            b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection, as the load test's client sends them."""
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            await reader.readexactly(int(headers.get("content-length", "0")))
            path = target.split("?", 1)[0]
            if method == "POST" and path == "/api/messages":
                writer.write(self._post(headers.get("idempotency-key", "")))
            elif method == "GET" and path.startswith("/api/stream/"):
                after = int(headers.get("last-event-id", "0"))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for frame in self._frames(path.removeprefix("/api/stream/"), after):
                    writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serve_scripted_gateway(
    gateway: ScriptedGateway, replicas: int = 2
) -> AsyncIterator[list[str]]:
    """``gateway`` on ``replicas`` ports of loopback (one state, like replicas of one stack)."""
    servers = [await asyncio.start_server(gateway.handle, HOST, 0) for _ in range(replicas)]
    try:
        yield [f"http://{HOST}:{s.sockets[0].getsockname()[1]}" for s in servers]
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
