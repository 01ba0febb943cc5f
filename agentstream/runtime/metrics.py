"""Counters and gauges in Prometheus' text format, with no dependency and no global state.

Each service owns one :class:`Metrics`; ``/metrics`` renders it. Names and labels are fixed in
code, so cardinality stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections import defaultdict

import psutil

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """A service's counters and gauges."""

    def __init__(self, prefix: str = "agentstream") -> None:
        self._prefix = prefix
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._help: dict[str, str] = {}

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._help[name] = help_text
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def add(self, name: str, help_text: str, amount: float, **labels: str) -> None:
        """Move a gauge up or down."""
        self._help[name] = help_text
        self._gauges[name][tuple(sorted(labels.items()))] += amount

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
