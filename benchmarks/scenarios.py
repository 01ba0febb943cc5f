"""The scenarios of the comparison, each one run against one system and returning its figures.

Every scenario opens its own runs (fresh IDs), so repetitions and systems never share state.
A run is opened by posting its status event ``n = 0``: a durable stream exists from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from itertools import count

import httpx
import psutil

from agentstream.devstack.loadtest.http1 import Origin, request
from agentstream.devstack.loadtest.sse import FrameParser
from benchmarks.generator import (
    CpuMeter,
    ProcessCpu,
    Producer,
    Reader,
    batch_bytes,
    event_bytes,
    opening_bytes,
)
from benchmarks.systems import AGENTSTREAM, Systems

_READY_TIMEOUT_S = 60.0
_ids = count()
# Run IDs unique to this bench process and short, so an event stays about 100 bytes.
_SESSION = f"{time.time_ns() // 1_000_000 % 36**4:x}"


@dataclass
class Options:
    """Sizes of a bench run; the defaults keep ``make bench`` within minutes on 2 cores."""

    duration_s: float = 4.0
    fanout_events: int = 300
    readers: int = 100
    idle_connections: tuple[int, ...] = (1_000,)
    messages: int = 7
    # How long readers may take to receive the last events once the producers stopped; past it
    # the missing ones count as lost.
    drain_s: float = 30.0


@dataclass
class Result:
    """One scenario on one system: its figures, whether every event arrived once and in order
    (None where no events are checked), and the generator's CPU (% of one core) meanwhile."""

    figures: dict[str, float]
    intact: bool | None
    generator_cpu: float
    detail: str = ""


@dataclass(frozen=True)
class Scenario:
    """A row of the table: what it measures and which figure the ratio compares."""

    key: str
    label: str
    run: Callable[[Systems, str, Options], Awaitable[Result]]
    headline: str
    unit: str
    higher_is_better: bool
    shown: tuple[str, ...] = field(default_factory=tuple)
    only: tuple[str, ...] | None = None


def _run_id(kind: str) -> str:
    return f"run_{kind}{next(_ids)}_{_SESSION}"


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _open(producers: list[Producer]) -> None:
    await asyncio.gather(*(p.post(opening_bytes(p.run)) for p in producers))


@contextlib.asynccontextmanager
async def _reading(readers: list[Reader]) -> AsyncIterator[None]:
    """The readers reading, each ready (see ``Reader.ready``); cancelled when the block ends."""
    tasks = [asyncio.create_task(reader.read()) for reader in readers]
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            await asyncio.gather(*(reader.ready.wait() for reader in readers))
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _paced(producer: Producer, rate: float, duration_s: float, start: float) -> int:
    """Single events at ``rate``/s for ``duration_s``; behind schedule, the next goes at once."""
    sent = 0
    while (due := start + sent / rate) < start + duration_s:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.post(event_bytes(producer.run, sent + 1))
        sent += 1
    return sent


async def _unpaced(producer: Producer, batch: int, until: float) -> int:
    sent = 0
    while time.perf_counter() < until:
        if batch == 1:
            await producer.post(event_bytes(producer.run, sent + 1))
        else:
            await producer.post(batch_bytes(producer.run, sent + 1, batch))
        sent += batch
    return sent


async def _finish(readers: list[Reader], totals: list[int], drain_s: float) -> bool:
    for reader, total in zip(readers, totals, strict=True):
        reader.expect(total)
    await asyncio.gather(*(reader.wait(drain_s) for reader in readers))
    return all(reader.intact() for reader in readers)


def _latency(readers: list[Reader], rate: float, sent: int, readers_n: int) -> dict[str, float]:
    latencies = [ms for reader in readers for ms in reader.latencies_ms]
    return {
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 0.99),
        "rate": rate,
        "events": float(sent),
        "deliveries": float(sum(r.received for r in readers)),
    }


async def latency(systems: Systems, name: str, options: Options, *, total_rate: float) -> Result:
    """10 runs, one producer connection and one reader each, ``total_rate`` events/s in all."""
    target = systems.targets[name]
    runs = [_run_id("lat") for _ in range(10)]
    producers = [Producer(target, run) for run in runs]
    readers = [Reader(target, run) for run in runs]
    try:
        await _open(producers)
        async with _reading(readers):
            meter = CpuMeter()
            start = time.perf_counter()
            sent = await asyncio.gather(
                *(_paced(p, total_rate / len(runs), options.duration_s, start) for p in producers)
            )
            achieved = sum(sent) / (time.perf_counter() - start)
            intact = await _finish(readers, sent, options.drain_s)
            cpu = meter.percent()
    finally:
        for producer in producers:
            producer.close()
    return Result(_latency(readers, achieved, sum(sent), len(readers)), intact, cpu)


async def ingest(systems: Systems, name: str, options: Options, *, batch: int) -> Result:
    """8 connections, each posting unpaced to its own run (posts of ``batch``), one reader per
    run: events/s stored (answered posts) and delivered (to the last reader's last event)."""
    target = systems.targets[name]
    runs = [_run_id("ing") for _ in range(8)]
    producers = [Producer(target, run) for run in runs]
    readers = [Reader(target, run, keep_latency=False) for run in runs]
    try:
        await _open(producers)
        async with _reading(readers):
            meter = CpuMeter()
            start = time.perf_counter()
            sent = await asyncio.gather(
                *(_unpaced(p, batch, start + options.duration_s) for p in producers)
            )
            stored_s = time.perf_counter() - start
            intact = await _finish(readers, sent, options.drain_s)
            delivered_s = max(reader.last_at for reader in readers) - start
            cpu = meter.percent()
    finally:
        for producer in producers:
            producer.close()
    total = sum(sent)
    figures = {"stored": total / stored_s, "delivered": total / delivered_s, "events": total}
    return Result(figures, intact, cpu)


async def fanout(systems: Systems, name: str, options: Options, *, rate: float | None) -> Result:
    """One run to ``options.readers`` readers: unpaced (``rate`` None, a fixed number of single
    events as fast as they are answered) for deliveries/s, or paced for latency; both with the
    server process's CPU per delivery."""
    target = systems.targets[name]
    run = _run_id("fan")
    producer = Producer(target, run)
    readers = [Reader(target, run, keep_latency=rate is not None) for _ in range(options.readers)]
    try:
        await _open([producer])
        async with _reading(readers):
            meter = CpuMeter()
            pid = systems.pids.get(name)
            server = ProcessCpu(pid) if pid is not None else None
            start = time.perf_counter()
            if rate is None:
                for n in range(1, options.fanout_events + 1):
                    await producer.post(event_bytes(run, n))
                sent = options.fanout_events
            else:
                sent = await _paced(producer, rate, options.duration_s, start)
            achieved = sent / (time.perf_counter() - start)
            intact = await _finish(readers, [sent] * len(readers), options.drain_s)
            delivered_s = max(reader.last_at for reader in readers) - start
            cpu = meter.percent()
            server_s = server.seconds() if server is not None else float("nan")
    finally:
        producer.close()
    figures = _latency(readers, achieved, sent, len(readers))
    deliveries = sum(r.received for r in readers)
    figures["deliveries_per_s"] = deliveries / delivered_s
    # What a delivery cost the server in CPU: unlike deliveries/s, barely moved by whatever
    # else the machine runs meanwhile.
    figures["server_us_per_delivery"] = 1e6 * server_s / max(deliveries, 1)
    return Result(figures, intact, cpu)


async def idle(systems: Systems, name: str, options: Options, *, connections: int) -> Result:
    """A freshly started server; ``connections`` SSE clients, each on its own quiet run: the
    growth of its resident memory per connection once every one is served."""
    opener = systems.targets[name]
    runs = [_run_id("idle") for _ in range(connections)]
    # Opened through the running server: the fresh one reads them from the same NATS.
    producers = [Producer(opener, run) for run in runs]
    try:
        for start in range(0, connections, 64):
            await _open(producers[start : start + 64])
    finally:
        for producer in producers:
            producer.close()
    async with systems.fresh(name) as (target, pid):
        process = psutil.Process(pid)
        before = process.memory_info().rss
        readers = [Reader(target, run, keep_latency=False) for run in runs]
        meter = CpuMeter()
        async with _reading(readers):
            after = process.memory_info().rss
            connected = sum(reader.ready.is_set() for reader in readers)
            cpu = meter.percent()
    per_kb = (after - before) / connections / 1024
    figures = {
        "kb_per_conn": per_kb,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
    }
    return Result(figures, connected == connections, cpu, f"{connected}/{connections} served")


async def first_event(systems: Systems, name: str, options: Options) -> Result:
    """``POST /api/messages`` until the run's stream delivers its first event, one at a time,
    with the stack otherwise idle."""
    gateway = systems.targets[name].url
    origin = Origin.parse(gateway)
    times_ms: list[float] = []
    meter = CpuMeter()
    async with httpx.AsyncClient(timeout=30.0) as http:
        for _ in range(options.messages):
            started = time.perf_counter()
            answer = await http.post(f"{gateway}/api/messages", json={"message": "hello"})
            answer.raise_for_status()
            path = answer.json()["stream_url"].removeprefix(gateway)
            async with request(origin, "GET", path, timeout_s=30.0) as response:
                parser = FrameParser()
                async with contextlib.aclosing(response.chunks(30.0)) as chunks:
                    async for chunk in chunks:
                        if parser.feed(chunk):
                            break
            times_ms.append((time.perf_counter() - started) * 1e3)
    figures = {"p50_ms": statistics.median(times_ms), "max_ms": max(times_ms)}
    return Result(figures, None, meter.percent(), f"{len(times_ms)} messages")


def scenarios(options: Options) -> Iterator[Scenario]:
    """The rows of the table, in order."""

    def bind(
        fn: Callable[..., Awaitable[Result]], **kw: object
    ) -> Callable[..., Awaitable[Result]]:
        return lambda systems, name, opts: fn(systems, name, opts, **kw)

    yield Scenario(
        "latency_100",
        "10 runs, 100 events/s in all: latency p50 / p99",
        bind(latency, total_rate=100.0),
        "p50_ms",
        "ms",
        False,
        ("p50_ms", "p99_ms", "rate"),
    )
    yield Scenario(
        "latency_1000",
        "10 runs, 1,000 events/s in all: rate, latency p50 / p99",
        bind(latency, total_rate=1_000.0),
        "p50_ms",
        "ms",
        False,
        ("rate", "p50_ms", "p99_ms"),
    )
    yield Scenario(
        "ingest_single",
        "ingest, single events on 8 connections: stored / delivered",
        bind(ingest, batch=1),
        "delivered",
        "events/s",
        True,
        ("stored", "delivered"),
    )
    yield Scenario(
        "ingest_batch50",
        "ingest, posts of 50 events on 8 connections: stored / delivered",
        bind(ingest, batch=50),
        "delivered",
        "events/s",
        True,
        ("stored", "delivered"),
    )
    yield Scenario(
        "fanout_unpaced",
        f"fan-out, 1 run to {options.readers} readers, unpaced",
        bind(fanout, rate=None),
        "deliveries_per_s",
        "deliveries/s",
        True,
        ("deliveries_per_s",),
    )
    yield Scenario(
        "fanout_50",
        f"fan-out, {options.readers} readers at 50 events/s: p50 / p99",
        bind(fanout, rate=50.0),
        "p50_ms",
        "ms",
        False,
        ("p50_ms", "p99_ms"),
    )
    for n in options.idle_connections:
        yield Scenario(
            f"idle_{n}",
            f"memory per idle SSE connection (fresh process, {n:,} connections)",
            bind(idle, connections=n),
            "kb_per_conn",
            "KB",
            False,
            ("kb_per_conn",),
            only=("plain relay", AGENTSTREAM),
        )
    yield Scenario(
        "first_event",
        "POST /api/messages -> first SSE event, p50 (stack idle)",
        first_event,
        "p50_ms",
        "ms",
        False,
        ("p50_ms",),
        only=(AGENTSTREAM,),
    )
