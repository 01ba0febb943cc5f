"""The load test end to end against a stand-in gateway: it passes an honest one and fails one
that loses, alters or repeats an event, or sends no proof."""

from __future__ import annotations

import pytest

from agentstream.devstack.loadtest.http1 import Origin
from agentstream.devstack.loadtest.load import LoadConfig, run_load
from agentstream.devstack.loadtest.proof import Verdict
from agentstream.devstack.loadtest.report import Summary, summarize
from agentstream.devstack.loadtest.runs import RunPlan
from agentstream.devstack.loadtest.usage import MetricsUsage
from tests.fakes.scripted_gateway import (
    EVENTS_PER_RUN,
    FAULTY_EVENT,
    Fault,
    ScriptedGateway,
    serve_scripted_gateway,
)

RUNS = 6
READERS = 2


async def _load(fault: Fault, gateway: ScriptedGateway | None = None) -> Summary:
    async with serve_scripted_gateway(gateway or ScriptedGateway(fault)) as urls:
        origins = [Origin.parse(url) for url in urls]
        plan = RunPlan(
            gateways=origins,
            readers=READERS,
            resume_fraction=0.5,
            # Every drop happens before the faulty event, so each reader meets the fault once.
            drop_within=FAULTY_EVENT - 1,
            deadline_s=20.0,
            message="hello",
        )
        result = await run_load(plan, LoadConfig(runs=RUNS, seed=8), MetricsUsage(origins))
    return summarize([result])


async def test_an_honest_gateway_passes_with_every_reader_resumed_once() -> None:
    summary = await _load(Fault.NONE)
    assert summary.passed, summary.problems
    assert summary.outcomes["done"] == RUNS
    assert summary.drops == summary.planned_drops == RUNS
    assert summary.verdicts[Verdict.OK] == RUNS * READERS
    assert summary.events_received == RUNS * READERS * EVENTS_PER_RUN
    assert summary.first_event.count == summary.done.count == RUNS


@pytest.mark.parametrize(
    ("fault", "verdict"),
    [
        (Fault.LOSE, Verdict.COUNT),
        (Fault.ALTER, Verdict.HASH),
        (Fault.NO_PROOF, Verdict.MISSING),
    ],
)
async def test_a_broken_stream_fails_every_reader(fault: Fault, verdict: Verdict) -> None:
    summary = await _load(fault)
    assert not summary.passed
    assert summary.verdicts[verdict] == RUNS * READERS
    assert summary.events_lost == (RUNS * READERS if fault == Fault.LOSE else 0)
    assert any("failed the proof" in problem for problem in summary.problems)


async def test_a_repeated_event_is_reported_as_duplicated() -> None:
    summary = await _load(Fault.REPEAT)
    assert not summary.passed
    assert summary.events_duplicated == RUNS * READERS
    assert "12 event(s) duplicated" in summary.problems


async def test_a_throttled_post_is_retried_with_the_same_key_not_failed() -> None:
    gateway = ScriptedGateway(Fault.THROTTLE)
    summary = await _load(Fault.THROTTLE, gateway)
    assert summary.passed, summary.problems
    assert summary.post_throttled == RUNS and summary.post_attempts == 2 * RUNS
    # Each run's retry carried its first try's Idempotency-Key.
    assert sorted(gateway.posts_by_key.values()) == [2] * RUNS
    assert len(gateway.runs_by_key) == RUNS
