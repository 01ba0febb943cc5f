"""The load generator every system is driven by: keep-alive producers and raw SSE readers.

Producers are raw asyncio streams; readers are ``asyncio.Protocol``s (``sse_protocol``), so a
delivery costs the generator a socket read, a callback and a few ``bytes`` operations, not an
HTTP library's layers or a task step. Every event carries its run's sequence number ``n``
(1, 2, ...) and the producer's wall-clock ``ts`` in ns; a reader checks that ``n`` arrives once
and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import msgspec
import psutil

from agentstream.devstack.loadtest.http1 import HttpError, Origin
from benchmarks.sse_protocol import SseProtocol

# ~100 bytes per event as posted (the figure the table is for).
_PAD = "x" * 24


class _Probe(msgspec.Struct):
    """The fields a reader needs from an event; the rest is not decoded."""

    n: int = 0
    ts: int = 0
    type: str = ""


_PROBE = msgspec.json.Decoder(_Probe)


def event_bytes(run: str, n: int) -> bytes:
    """One token event of ``run`` numbered ``n``, stamped now."""
    return (
        f'{{"type":"token","run":"{run}","n":{n},"ts":{time.time_ns()},"text":"{_PAD}"}}'.encode()
    )


def opening_bytes(run: str) -> bytes:
    """The status event ``n = 0`` that opens ``run`` (a durable stream exists from then on)."""
    return f'{{"type":"status","run":"{run}","n":0,"stage":"agent_started"}}'.encode()


def batch_bytes(run: str, first: int, count: int) -> bytes:
    """A JSON array of events ``first`` .. ``first + count - 1``."""
    return b"[" + b",".join(event_bytes(run, n) for n in range(first, first + count)) + b"]"


@dataclass(frozen=True)
class Target:
    """A system under test: where it listens and how its streams and bridge behave."""

    name: str
    url: str
    # Readers get the run's earlier events (a durable stream): a reader is ready once it got the
    # run's opening event. Otherwise it is ready once the server sent anything (its subscribed
    # comment), and only events published after that reach it.
    replays: bool
    secret: str | None = None

    def headers(self, run: str) -> dict[str, str]:
        """The producer's headers for ``run`` (a callback token where the bridge wants one)."""
        if self.secret is None:
            return {}
        from agentstream.runtime.tokens import TokenClaims, mint_token

        claims = TokenClaims(
            kind="callback", run=run, org="default", attempt=1, exp=int(time.time()) + 3_600
        )
        return {"Authorization": f"Bearer {mint_token(self.secret, claims)}"}


class Producer:
    """One keep-alive connection posting to one run's bridge, a post answered before the next."""

    def __init__(self, target: Target, run: str) -> None:
        self.origin = Origin.parse(target.url)
        self.run = run
        self._head = (
            f"POST {self.origin.prefix}/api/stream/{run}/chunk HTTP/1.1\r\n"
            f"Host: {self.origin.host_header}\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in target.headers(run).items())
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, timeout_s: float = 30.0) -> None:
        """Post ``body``; raises ``HttpError`` unless it is answered 200."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.origin.host, self.origin.port
            )
        assert self._reader is not None
        self._writer.write(f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        async with asyncio.timeout(timeout_s):
            head = await self._reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            answer = await self._reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            status = head.split(b"\r\n", 1)[0]
            raise HttpError(f"post to {self.run}: {status!r} {answer[:200]!r}")

    def close(self) -> None:
        """Drop the connection."""
        if self._writer is not None:
            self._writer.close()


@dataclass
class Reader:
    """One SSE client of one run: counts the run's events, checks their order, times them."""

    target: Target
    run: str
    keep_latency: bool = True
    received: int = 0
    last_n: int = 0
    out_of_order: int = 0
    last_at: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the scenario once the producers finished: the reader ends at this many events.
    expected: int | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, total: int) -> None:
        """The run has ``total`` events: end once they all arrived."""
        self.expected = total
        if self.received >= total:
            self._done.set()

    async def wait(self, timeout_s: float) -> None:
        """Until every expected event arrived, or ``timeout_s`` (integrity then shows loss)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._done.wait()

    async def read(self, idle_timeout_s: float = 60.0) -> None:
        """Hold the stream until cancelled, the server ends it, or nothing arrives for
        ``idle_timeout_s``."""
        origin = Origin.parse(self.target.url)
        request = (
            f"GET {origin.prefix}/api/stream/{self.run} HTTP/1.1\r\n"
            f"Host: {origin.host_header}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(30.0):
                _, stream = await loop.create_connection(
                    lambda: SseProtocol(request, self._on_events),
                    origin.host,
                    origin.port,
                    ssl=origin.tls or None,
                )
        except (OSError, TimeoutError):
            return
        try:
            # One timer per idle period, not one per socket read.
            while True:
                reads = stream.reads
                done, _ = await asyncio.wait({stream.closed}, timeout=idle_timeout_s)
                if done or stream.reads == reads:
                    return
        finally:
            stream.close()

    def _on_events(self, events: list[bytes]) -> None:
        """One socket read's complete events: check each one's ``n``, count, time."""
        if not self.target.replays:
            self.ready.set()
        if not events:
            return
        now_ns = time.time_ns()
        decode = _PROBE.decode
        for data in events:
            probe = decode(data)
            if probe.n == 0:
                # The run's opening status event, not part of the measured sequence.
                self.ready.set()
                continue
            if probe.n != self.last_n + 1:
                self.out_of_order += 1
            self.last_n = max(self.last_n, probe.n)
            self.received += 1
            if self.keep_latency:
                self.latencies_ms.append((now_ns - probe.ts) / 1e6)
        self.last_at = time.perf_counter()
        if self.expected is not None and self.received >= self.expected:
            self._done.set()

    def intact(self) -> bool:
        """Every expected event arrived, once, in order."""
        return self.out_of_order == 0 and self.received == self.expected


class CpuMeter:
    """This process's CPU time over a span, as a share of one core."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def percent(self) -> float:
        """CPU seconds per wall second since the meter started, in % of one core."""
        wall = time.perf_counter() - self._wall
        return 100.0 * (time.process_time() - self._cpu) / max(wall, 1e-9)


class ProcessCpu:
    """Another process's CPU time (user + system) over a span: the server under test's."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._start = self._used()

    def _used(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def seconds(self) -> float:
        """CPU seconds the process used since the meter started."""
        return self._used() - self._start
