"""The load test at a small size on the real stack: a crowd of runs, each read by two clients on
different replicas, one of which drops and resumes; then the same with a replica SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agentstream.devstack.loadtest.http1 import Origin
from agentstream.devstack.loadtest.load import LoadConfig, run_load
from agentstream.devstack.loadtest.proof import Verdict
from agentstream.devstack.loadtest.report import Summary, summarize
from agentstream.devstack.loadtest.runs import RunPlan
from agentstream.devstack.loadtest.usage import ProcessUsage
from agentstream.devstack.stack import LocalStack

RUNS = 20
READERS = 2
# A run has at least its status and tool events (about ten) before its terminal one, however
# its tokens are coalesced: every planned drop happens.
DROP_WITHIN = 6
DEADLINE_S = 120.0


def _plan(stack: LocalStack) -> RunPlan:
    return RunPlan(
        gateways=[Origin.parse(url) for url in stack.gateway_urls],
        readers=READERS,
        resume_fraction=0.5,
        drop_within=DROP_WITHIN,
        deadline_s=DEADLINE_S,
        message="Count the words of this sentence, please.",
    )


def _gateway_pids(stack: LocalStack) -> dict[str, int]:
    return {
        name: process.pid
        for name, process in stack.processes.items()
        if name in ("gateway-0", "gateway-1") and process.running and process.pid is not None
    }


def _assert_every_run_done_and_proven(summary: Summary) -> None:
    assert summary.passed, summary.problems
    assert summary.outcomes["done"] == RUNS
    assert summary.verdicts[Verdict.OK] == RUNS * READERS
    assert summary.events_lost == summary.events_duplicated == summary.events_reordered == 0
    # One of each run's two readers left part-way and resumed on the other replica.
    assert summary.drops == summary.planned_drops == RUNS
    assert summary.first_event.count == summary.first_token.count == summary.done.count == RUNS


async def test_a_crowd_of_runs_all_end_done_and_every_reader_holds_the_proof(
    stack: LocalStack,
) -> None:
    usage = ProcessUsage(lambda: _gateway_pids(stack))
    result = await run_load(_plan(stack), LoadConfig(runs=RUNS, seed=1), usage)
    summary = summarize([result])
    _assert_every_run_done_and_proven(summary)
    assert sorted(r.name for r in summary.gateways) == ["gateway-0", "gateway-1"]
    assert all(r.rss_peak and r.samples >= 2 for r in summary.gateways)


async def test_with_a_replica_killed_mid_crowd_its_readers_resume_on_the_other(
    stack: LocalStack,
) -> None:
    victim = stack.processes["gateway-1"]

    async def kill() -> str:
        await victim.kill()
        return victim.name

    usage = ProcessUsage(lambda: _gateway_pids(stack))
    config = LoadConfig(runs=RUNS, seed=2, kill_at_fraction=0.25)
    try:
        result = await run_load(_plan(stack), config, usage, kill)
    finally:
        await stack.restart(victim.name)
    summary = summarize([result], kill_requested=True)
    _assert_every_run_done_and_proven(summary)
    assert summary.kill is not None and summary.kill.replica == "gateway-1"
    assert summary.kill.runs_finished < RUNS
    # Readers of the killed replica lost their connections and resumed elsewhere.
    assert summary.broken_connections > 0


async def test_the_command_exits_zero_and_writes_its_report(
    stack: LocalStack, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    gateways = [arg for url in stack.gateway_urls for arg in ("--gateway", url)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream",
        "loadtest",
        *gateways,
        "--runs",
        "4",
        "--json",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(DEADLINE_S):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "PASS" in output.decode()
    written = json.loads(report.read_bytes())
    assert written["summary"]["passed"] is True
    assert written["summary"]["outcomes"]["done"] == 4
    assert len(written["results"][0]["runs"]) == 4
    # Gateways it did not start: their memory comes from each replica's /metrics.
    replicas = written["summary"]["gateways"]
    assert len(replicas) == 2 and all(r["source"] == "/metrics" for r in replicas)
    assert all(r["rss_peak"] > 10_000_000 and r["cpu_last_s"] > 0 for r in replicas)
