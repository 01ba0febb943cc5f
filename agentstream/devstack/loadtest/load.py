"""The crowd: N simulated users started together (or at a set rate), a replica killed part-way
if asked, memory and CPU of the system under test sampled throughout, and the generator's own
CPU measured."""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from agentstream.devstack.loadtest.records import RunRecord
from agentstream.devstack.loadtest.runs import RunPlan, drive_run
from agentstream.devstack.loadtest.usage import Usage, UsageFigures, sample_until

# What ``kill`` says it killed (a replica's name).
Kill = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """How many runs, how fast, and when to kill a replica (never by default)."""

    runs: int
    rate: float = 0.0
    seed: int | None = None
    kill_after_s: float | None = None
    kill_at_fraction: float | None = None
    sample_interval_s: float = 1.0


class KillRecord(msgspec.Struct, kw_only=True):
    """Which replica was killed, when, and how far the load was then."""

    replica: str
    at_s: float
    runs_finished: int


class LoadResult(msgspec.Struct, kw_only=True):
    """Everything measured; the report is computed from it."""

    runs: list[RunRecord]
    wall_s: float
    generator_cpu_s: float
    generator_rss_peak: int
    processes: list[UsageFigures]
    kill: KillRecord | None = None


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    plan: RunPlan, config: LoadConfig, usage: Usage, kill: Kill | None = None
) -> LoadResult:
    """Drive ``config.runs`` runs to their end (or deadline) and return what was seen."""
    loop = asyncio.get_running_loop()
    rng = random.Random(config.seed)
    started, cpu_started = loop.time(), _cpu_s()
    finished = 0
    threshold = (
        max(1, round(config.kill_at_fraction * config.runs))
        if config.kill_at_fraction is not None
        else None
    )
    reached = asyncio.Event()

    async def one(index: int) -> RunRecord:
        nonlocal finished
        if config.rate > 0:
            await asyncio.sleep(index / config.rate)
        try:
            return await drive_run(plan, index, rng)
        finally:
            finished += 1
            if threshold is not None and finished >= threshold:
                reached.set()

    kill_record: KillRecord | None = None

    async def killer() -> None:
        nonlocal kill_record
        assert kill is not None
        if config.kill_after_s is not None:
            await asyncio.sleep(config.kill_after_s)
        else:
            await reached.wait()
        name = await kill()
        kill_record = KillRecord(replica=name, at_s=loop.time() - started, runs_finished=finished)

    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_until(usage, stop_sampling, config.sample_interval_s))
    kill_task = (
        asyncio.create_task(killer())
        if kill is not None and (config.kill_after_s is not None or threshold is not None)
        else None
    )
    try:
        records = list(await asyncio.gather(*(one(i) for i in range(config.runs))))
    finally:
        if kill_task is not None:
            if not kill_task.done():
                kill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kill_task
        stop_sampling.set()
        await sampler
    return LoadResult(
        runs=records,
        wall_s=loop.time() - started,
        generator_cpu_s=_cpu_s() - cpu_started,
        # ru_maxrss is in KiB on Linux.
        generator_rss_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        processes=list(usage.figures.values()),
        kill=kill_record,
    )
