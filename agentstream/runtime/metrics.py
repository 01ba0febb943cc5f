"""Counters, gauges and histograms in Prometheus' text format, with no dependency and no global
state.

Each service owns one :class:`Metrics`; ``/metrics`` renders it. Names and labels are fixed in
code, so cardinality stays bounded whatever the traffic.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence

import psutil

Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Observations counted in fixed buckets, with their sum: one bisection and two additions
    an observation, so it can sit on the hot path. No labels: one series per histogram."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(sorted(bounds))
        # One count per bucket, the last for values above every bound (le="+Inf").
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is at least ``value``."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self._counts)

    @property
    def sum(self) -> float:
        """The sum of the observed values."""
        return self._sum

    def lines(self, full: str) -> list[str]:
        """The ``_bucket`` (cumulative), ``_sum`` and ``_count`` samples of ``full``."""
        lines = []
        total = 0
        for bound, count in zip(self._bounds, self._counts, strict=False):
            total += count
            lines.append(f'{full}_bucket{{le="{_number(float(bound))}"}} {total}')
        total += self._counts[-1]
        lines.append(f'{full}_bucket{{le="+Inf"}} {total}')
        lines.append(f"{full}_sum {_number(self._sum)}")
        lines.append(f"{full}_count {total}")
        return lines


class Metrics:
    """A service's counters, gauges and histograms."""

    def __init__(self, prefix: str = "agentstream") -> None:
        self._prefix = prefix
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, Histogram] = {}
        self._help: dict[str, str] = {}

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._help[name] = help_text
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def add(self, name: str, help_text: str, amount: float, **labels: str) -> None:
        """Move a gauge up or down."""
        self._help[name] = help_text
        self._gauges[name][tuple(sorted(labels.items()))] += amount

    def histogram(self, name: str, help_text: str, bounds: Sequence[float]) -> Histogram:
        """The histogram ``name``, made with bucket upper ``bounds`` on first use; callers on a
        hot path keep it and call its ``observe``."""
        histogram = self._histograms.get(name)
        if histogram is None:
            self._help[name] = help_text
            histogram = self._histograms[name] = Histogram(bounds)
        return histogram

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never touched)."""
        key = tuple(sorted(labels.items()))
        series = self._counters.get(name) or self._gauges.get(name) or {}
        return series.get(key, 0.0)

    def render(self) -> str:
        """The exposition text."""
        lines: list[str] = []
        for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
            for name, series in sorted(table.items()):
                full = f"{self._prefix}_{name}"
                lines.append(f"# HELP {full} {self._help[name]}")
                lines.append(f"# TYPE {full} {kind}")
                for labels, value in sorted(series.items()):
                    rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    series_name = f"{full}{{{rendered}}}" if rendered else full
                    lines.append(f"{series_name} {_number(value)}")
        for name, histogram in sorted(self._histograms.items()):
            full = f"{self._prefix}_{name}"
            lines.append(f"# HELP {full} {self._help[name]}")
            lines.append(f"# TYPE {full} histogram")
            lines.extend(histogram.lines(full))
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """Exact for whole numbers (``:g`` would round large counters), repr otherwise."""
    return str(int(value)) if value.is_integer() else repr(value)


def _escape(value: str) -> str:
    """Label values escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def process_metrics() -> str:
    """This process's resident memory and CPU time, under the names Prometheus client libraries'
    process collectors use, so dashboards and ``agentstream loadtest`` find them as usual."""
    process = psutil.Process()
    with process.oneshot():
        rss = process.memory_info().rss
        times = process.cpu_times()
    return (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {rss}\n"
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        f"process_cpu_seconds_total {times.user + times.system!r}\n"
    )


LIMIT_HITS = "limit_hits_total"
LIMIT_HITS_HELP = "Requests refused because a configured limit was reached."
