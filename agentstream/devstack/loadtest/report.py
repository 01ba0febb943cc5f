"""The load test's verdict: figures computed from the raw records, a table for people, JSON for
machines, and whether the run passed."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TextIO

import msgspec

from agentstream.devstack.loadtest.load import KillRecord, LoadResult
from agentstream.devstack.loadtest.proof import Verdict
from agentstream.devstack.loadtest.records import Outcome, RunRecord
from agentstream.devstack.loadtest.usage import UsageFigures

_SHOWN_PROBLEMS = 8


class Latency(msgspec.Struct, kw_only=True):
    """Seconds, over the runs that reached the point."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None


class Summary(msgspec.Struct, kw_only=True):
    """The figures of one load test (or of several merged)."""

    runs: int
    outcomes: dict[str, int]
    post_attempts: int
    post_throttled: int
    accepted: Latency
    first_event: Latency
    first_token: Latency
    done: Latency
    readers: int
    planned_drops: int
    drops: int
    broken_connections: int
    events_received: int
    events_lost: int
    events_duplicated: int
    events_reordered: int
    verdicts: dict[str, int]
    readers_failing_proof: int
    wall_s: float
    generator_cpu_s: float
    generator_cpu_share: float
    generator_rss_peak: int
    gateways: list[UsageFigures]
    # With --stack: the other parts of the stack (agent, worker, NATS, Temporal).
    other_processes: list[UsageFigures]
    kill_requested: bool
    kill: KillRecord | None
    problems: list[str]
    passed: bool


class Report(msgspec.Struct, kw_only=True):
    """What ``--json`` writes: the summary, the settings and every raw record."""

    summary: Summary
    settings: dict[str, object]
    results: list[LoadResult]


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the value at or below which ``fraction`` of them lie)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _latency(values: list[float | None]) -> Latency:
    present = [v for v in values if v is not None]
    return Latency(
        count=len(present),
        p50=percentile(present, 0.50),
        p99=percentile(present, 0.99),
        max=max(present) if present else None,
    )


def summarize(results: list[LoadResult], *, kill_requested: bool = False) -> Summary:
    """The figures over every run of ``results`` (one per machine when merged)."""
    runs: list[RunRecord] = [run for result in results for run in result.runs]
    readers = [reader for run in runs for reader in run.readers]
    outcomes = Counter(str(run.outcome) for run in runs)
    verdicts = Counter(reader.verdict for reader in readers)
    done_runs = [run for run in runs if run.outcome == Outcome.DONE]
    kill = next((result.kill for result in results if result.kill is not None), None)
    wall_s = max((result.wall_s for result in results), default=0.0)
    cpu_s = sum(result.generator_cpu_s for result in results)
    summary = Summary(
        runs=len(runs),
        outcomes={str(o): outcomes.get(str(o), 0) for o in Outcome},
        post_attempts=sum(run.post_attempts for run in runs),
        post_throttled=sum(run.post_throttled for run in runs),
        accepted=_latency([run.accepted_s for run in runs]),
        first_event=_latency([run.first_event_s for run in runs]),
        first_token=_latency([run.first_token_s for run in runs]),
        done=_latency([run.terminal_s for run in done_runs]),
        readers=len(readers),
        planned_drops=sum(reader.planned_drop is not None for reader in readers),
        drops=sum(reader.dropped for reader in readers),
        broken_connections=sum(reader.broken for reader in readers),
        events_received=sum(reader.events for reader in readers),
        events_lost=sum(reader.lost for reader in readers),
        events_duplicated=sum(reader.duplicates for reader in readers),
        events_reordered=sum(reader.reordered for reader in readers),
        verdicts={str(v): verdicts.get(str(v), 0) for v in Verdict},
        readers_failing_proof=sum(reader.verdict != Verdict.OK for reader in readers),
        wall_s=wall_s,
        generator_cpu_s=cpu_s,
        generator_cpu_share=cpu_s / wall_s if wall_s > 0 else 0.0,
        generator_rss_peak=max((result.generator_rss_peak for result in results), default=0),
        gateways=[p for result in results for p in result.processes if p.gateway],
        other_processes=[p for result in results for p in result.processes if not p.gateway],
        kill_requested=kill_requested,
        kill=kill,
        problems=[],
        passed=False,
    )
    summary.problems = _problems(summary, runs)
    summary.passed = not summary.problems
    return summary


def _problems(summary: Summary, runs: list[RunRecord]) -> list[str]:
    """Every reason the load test fails, most telling first."""
    problems: list[str] = []
    for outcome in (Outcome.FAILED, Outcome.CANCELLED, Outcome.HUNG, Outcome.NOT_STARTED):
        count = summary.outcomes[str(outcome)]
        if count:
            problems.append(f"{count} run(s) {outcome}")
    for label, count in (
        ("lost", summary.events_lost),
        ("duplicated", summary.events_duplicated),
        ("reordered", summary.events_reordered),
    ):
        if count:
            problems.append(f"{count} event(s) {label}")
    for verdict, count in summary.verdicts.items():
        if count and verdict != Verdict.OK:
            problems.append(f"{count} reader(s) failed the proof: {verdict}")
    if summary.kill_requested and summary.kill is None:
        problems.append("a replica kill was asked for but the load ended before it")
    shown = 0
    for run in runs:
        if run.outcome != Outcome.DONE and shown < _SHOWN_PROBLEMS:
            shown += 1
            problems.append(f"  run {run.index} {run.run_id or '-'}: {run.outcome}: {run.reason}")
    return problems


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:,.1f} MiB"


def _cpu(figures: UsageFigures) -> str:
    cpu = figures.cpu_s
    return "-" if cpu is None else f"{cpu:,.1f} s"


def print_summary(summary: Summary, out: TextIO) -> None:
    """The table a person reads."""
    w = out.write
    outcome_text = ", ".join(f"{count} {name}" for name, count in summary.outcomes.items())
    w(f"runs          {summary.runs}: {outcome_text}\n")
    w(f"POST          {summary.post_attempts} attempts, {summary.post_throttled} throttled (429)\n")
    w(f"{'latency from POST':<22}{'n':>6}{'p50':>12}{'p99':>12}{'max':>12}\n")
    for label, latency in (
        ("  202 accepted", summary.accepted),
        ("  first event", summary.first_event),
        ("  first token", summary.first_token),
        ("  done", summary.done),
    ):
        w(
            f"{label:<22}{latency.count:>6}{_ms(latency.p50):>12}{_ms(latency.p99):>12}"
            f"{_ms(latency.max):>12}\n"
        )
    w(
        f"readers       {summary.readers}: {summary.drops} of {summary.planned_drops} planned "
        f"drops resumed, {summary.broken_connections} broken connections resumed\n"
    )
    w(
        f"events        {summary.events_received:,} received, {summary.events_lost} lost, "
        f"{summary.events_duplicated} duplicated, {summary.events_reordered} reordered\n"
    )
    verdict_text = ", ".join(f"{n} {v}" for v, n in summary.verdicts.items() if n)
    w(f"proof         {summary.readers_failing_proof} reader(s) failed ({verdict_text})\n")
    if summary.kill is not None:
        w(
            f"killed        {summary.kill.replica} (SIGKILL) at {summary.kill.at_s:.1f}s, "
            f"{summary.kill.runs_finished} runs finished by then\n"
        )
    for replica in summary.gateways:
        w(
            f"gateway       {replica.name}: RSS {_mib(replica.rss_first)} → peak "
            f"{_mib(replica.rss_peak)}, last {_mib(replica.rss_last)}; CPU {_cpu(replica)} "
            f"({replica.source}, {replica.samples} samples)\n"
        )
    if all(r.rss_peak is None for r in summary.gateways):
        w("gateway       memory not known: the replicas expose no process metrics\n")
    if summary.other_processes:
        parts = ", ".join(
            f"{p.name} {_cpu(p)} (peak {_mib(p.rss_peak)})" for p in summary.other_processes
        )
        w(f"stack CPU     {parts}\n")
    w(
        f"generator     {summary.generator_cpu_s:.1f} s CPU in {summary.wall_s:.1f} s "
        f"({summary.generator_cpu_share:.0%} of one core), peak RSS "
        f"{_mib(summary.generator_rss_peak)}\n"
    )
    if summary.passed:
        w("PASS\n")
    else:
        w("FAIL\n")
        for problem in summary.problems:
            w(f"  {problem}\n")


def write_report(path: Path, report: Report) -> None:
    """Write ``report`` as JSON."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))


def read_report(path: Path) -> Report:
    """A report written by :func:`write_report`."""
    return msgspec.json.decode(path.read_bytes(), type=Report)
