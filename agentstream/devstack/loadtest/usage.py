"""Memory and CPU of the system under test while the load runs.

Against its own stack the load test reads every part's process (psutil): the gateway replicas,
and the agent, worker, NATS and Temporal, which say where the time goes. Against gateways it
did not start, it reads each replica's ``/metrics`` for the standard
``process_resident_memory_bytes`` and ``process_cpu_seconds_total``, when the replica exposes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import psutil

from agentstream.devstack.loadtest.http1 import HttpError, Origin, request

_RSS_METRIC = "process_resident_memory_bytes"
_CPU_METRIC = "process_cpu_seconds_total"


class UsageFigures(msgspec.Struct, kw_only=True):
    """One process over the test: resident memory first/peak/last, CPU seconds it used."""

    name: str
    gateway: bool
    source: str
    samples: int = 0
    rss_first: int | None = None
    rss_peak: int | None = None
    rss_last: int | None = None
    cpu_first_s: float | None = None
    cpu_last_s: float | None = None

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds used between the first and the last sample."""
        if self.cpu_first_s is None or self.cpu_last_s is None:
            return None
        return self.cpu_last_s - self.cpu_first_s

    def add(self, rss: int | None, cpu_s: float | None) -> None:
        """Fold in one sample."""
        self.samples += 1
        if rss is not None:
            self.rss_first = rss if self.rss_first is None else self.rss_first
            self.rss_peak = max(rss, self.rss_peak or 0)
            self.rss_last = rss
        if cpu_s is not None:
            self.cpu_first_s = cpu_s if self.cpu_first_s is None else self.cpu_first_s
            self.cpu_last_s = cpu_s


@dataclass(frozen=True, slots=True)
class _Probe:
    rss: int | None
    cpu_s: float | None


class ProcessUsage:
    """Samples processes of this machine; ``pids`` names the live ones at each sample (a killed
    one simply stops being sampled). Names starting ``gateway`` are the gateway replicas."""

    def __init__(self, pids: Callable[[], dict[str, int]]) -> None:
        self._pids = pids
        self.figures: dict[str, UsageFigures] = {}

    async def sample(self) -> None:
        """One sample of every live process."""
        for name, pid in self._pids().items():
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except psutil.Error:
                continue
            # Children it has reaped count too: the agent's sandbox commands are its children.
            cpu_s = times.user + times.system + times.children_user + times.children_system
            figures = UsageFigures(name=name, gateway=name.startswith("gateway"), source="process")
            self.figures.setdefault(name, figures).add(rss, cpu_s)


class MetricsUsage:
    """Samples each gateway's ``/metrics``."""

    def __init__(self, gateways: list[Origin], timeout_s: float = 5.0) -> None:
        self._gateways = gateways
        self._timeout_s = timeout_s
        self.figures: dict[str, UsageFigures] = {}

    async def sample(self) -> None:
        """One sample of every replica that answers."""
        probes = await asyncio.gather(*(self._probe(g) for g in self._gateways))
        for origin, probe in zip(self._gateways, probes, strict=True):
            name = f"{origin.host_header}{origin.prefix}"
            figures = UsageFigures(name=name, gateway=True, source="/metrics")
            usage = self.figures.setdefault(name, figures)
            if probe is not None:
                usage.add(probe.rss, probe.cpu_s)

    async def _probe(self, origin: Origin) -> _Probe | None:
        try:
            async with request(origin, "GET", "/metrics", timeout_s=self._timeout_s) as response:
                text = (await response.read(self._timeout_s)).decode(errors="replace")
        except HttpError:
            return None
        if response.status != 200:
            return None
        values = parse_process_metrics(text)
        rss = values.get(_RSS_METRIC)
        return _Probe(int(rss) if rss is not None else None, values.get(_CPU_METRIC))


def parse_process_metrics(text: str) -> dict[str, float]:
    """The unlabelled process metrics of a Prometheus exposition text."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (_RSS_METRIC, _CPU_METRIC):
            try:
                values[name] = float(value.split()[0])
            except (ValueError, IndexError):
                continue
    return values


Usage = ProcessUsage | MetricsUsage


async def sample_until(usage: Usage, stop: asyncio.Event, interval_s: float) -> None:
    """Sample every ``interval_s`` until ``stop`` is set, and once more then."""
    while True:
        await usage.sample()
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            continue
        await usage.sample()
        return
