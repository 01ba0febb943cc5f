"""Busy never means failed: runs beyond the agents' capacity wait in Temporal and all finish.

Each test gives a fresh org an agent and a worker of its own, configured for the case.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx
from temporalio.client import Client as TemporalClient

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.temporal_codec import data_converter
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.fakes.openai_server import FakeOpenAIServer, run_openai_server
from tests.stacks import extra_gateway


def _org(case: str) -> str:
    return f"{case}{uuid.uuid4().hex[:8]}"


def _stages(messages: list[SseMessage]) -> list[str]:
    return [m.json()["stage"] for m in messages if m.event == "status"]


def _agent_span(messages: list[SseMessage]) -> tuple[int, int]:
    """When the agent held the run's slot: its ``agent_started`` to its last event (ns)."""
    started = next(i for i, m in enumerate(messages) if m.json().get("stage") == "agent_started")
    saving = next(i for i, m in enumerate(messages) if m.json().get("stage") == "saving")
    return messages[started].json()["ts"], messages[saving - 1].json()["ts"]


def _most_at_once(spans: list[tuple[int, int]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


async def _temporal(stack: LocalStack) -> TemporalClient:
    return await TemporalClient.connect(stack.temporal_address, data_converter=data_converter)


async def test_runs_beyond_the_agents_capacity_wait_in_line_and_all_end_done(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    org = _org("line")
    gateway = stack.gateway_urls[0]
    capacity = {"AGENT_MAX_CONCURRENT_RUNS": "2"}
    async with stack.dedicated_agent(org, env=capacity, worker_env={"WORKER_AGENT_SLOTS": "2"}):
        runs = await asyncio.gather(
            *(start_run(http, gateway, f"Count the words of note {i}", org=org) for i in range(10))
        )

        finished = asyncio.Event()

        async def first_seen_waiting() -> dict[str, Any] | None:
            """While two runs hold the agent, the others wait, and GET /api/runs says how long.

            The last runs posted wait longest; one request at a time, within the rate limit.
            """
            for run in itertools.cycle(reversed(runs)):
                if finished.is_set():
                    return None
                view: dict[str, Any] = (await http.get(f"{gateway}/api/runs/{run}")).json()
                if view.get("waiting_for_agent_s") is not None:
                    return view
                await asyncio.sleep(0.1)
            return None

        probe = asyncio.create_task(first_seen_waiting())
        try:
            streams = await asyncio.gather(*(read_whole_run(http, gateway, run) for run in runs))
            finished.set()
            waiting = await asyncio.wait_for(probe, 10)
        finally:
            probe.cancel()

    for run, messages in zip(runs, streams, strict=True):
        assert_complete(messages)
        assert messages[-1].event == "done", (run, messages[-1].data)
        stages = _stages(messages)
        assert stages.index("waiting_for_agent") < stages.index("agent_started"), stages
        assert "reset" not in [m.event for m in messages], "nothing was refused or retried"
    assert waiting is not None, "some run was seen waiting for the agent"
    assert waiting["waiting_for_agent_s"] >= 0
    assert waiting["status"] == "running" and waiting["result"] is None, waiting
    spans = [_agent_span(messages) for messages in streams]
    assert _most_at_once(spans) == 2, "the agent served two runs at a time, never more"
    for run in runs:
        done = (await http.get(f"{gateway}/api/runs/{run}")).json()
        assert done["status"] == "completed" and done["waiting_for_agent_s"] is None, done


async def test_an_agent_refusing_for_capacity_is_retried_without_failing_the_run(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # A worker told the agent takes more than it does: the agent refuses (503 agent_busy).
    org = _org("busy")
    gateway = stack.gateway_urls[0]
    agent_env = {"AGENT_MAX_CONCURRENT_RUNS": "1", "SCRIPTED_TOKEN_DELAY_S": "0.02"}
    async with stack.dedicated_agent(org, env=agent_env, worker_env={"WORKER_AGENT_SLOTS": "4"}):
        runs = await asyncio.gather(
            *(start_run(http, gateway, f"Count the words of memo {i}", org=org) for i in range(4))
        )
        streams = await asyncio.gather(*(read_whole_run(http, gateway, run) for run in runs))

    temporal = await _temporal(stack)
    refused_before: list[str] = []
    for run, messages in zip(runs, streams, strict=True):
        assert_complete(messages)
        assert messages[-1].event == "done", (run, messages[-1].data)
        # A refused attempt never started: there is no partial output for clients to drop.
        assert "reset" not in [m.event for m in messages], [m.event for m in messages]
        assert _stages(messages).count("waiting_for_agent") == 1
        # What ended the attempt before the one that ran, as Temporal recorded it.
        async for event in temporal.get_workflow_handle(run).fetch_history_events():
            started = event.activity_task_started_event_attributes
            if event.HasField("activity_task_started_event_attributes") and started.attempt > 1:
                failure = started.last_failure
                refused_before.append(f"{failure.application_failure_info.type}: {failure.message}")
    assert refused_before, "the agent refused some attempts"
    assert all(r.startswith("CapacityRefused: ") and "agent_busy" in r for r in refused_before), (
        refused_before
    )


async def test_past_the_orgs_line_a_message_is_refused_at_the_door_with_retry_after(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # No worker serves the org: its runs stay open, so the line stays as long as it is.
    org, other = _org("full"), _org("other")
    started: list[str] = []
    async with extra_gateway(stack, f"gateway-{org}", {"MAX_OPEN_RUNS_PER_ORG": "2"}) as gateway:
        try:
            for i in range(2):
                started.append(await start_run(http, gateway, f"queue me {i}", org=org))
            refused = await http.post(
                f"{gateway}/api/messages", json={"message": "one more", "org": org}
            )
            started.append(
                await start_run(http, gateway, "another org's line is its own", org=other)
            )
        finally:
            temporal = await _temporal(stack)
            for run in started:
                await temporal.get_workflow_handle(run).terminate(reason="test cleanup")

    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["retry-after"]) >= 1
    body = refused.json()
    assert body["error"] == "too_many_requests"
    assert f"org {org} has 2 runs waiting or running" in body["detail"], body


async def test_an_idempotency_key_returns_the_same_run_on_any_replica_and_when_racing(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    first, second = stack.gateway_urls
    message = {"message": "Count the words of this sentence, once."}

    async def post(gateway: str, key: str, body: dict[str, str] = message) -> httpx.Response:
        return await http.post(
            f"{gateway}/api/messages", json=body, headers={"Idempotency-Key": key}
        )

    key = f"retry-{uuid.uuid4()}"
    original = await post(first, key)
    retried = await post(second, key)
    assert original.status_code == retried.status_code == 202, (original.text, retried.text)
    run = original.json()["workflow_id"]
    assert retried.json()["workflow_id"] == run
    assert retried.json()["conversation_id"] == original.json()["conversation_id"]
    assert retried.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in original.headers

    racing_key = f"race-{uuid.uuid4()}"
    racing = await asyncio.gather(*(post(g, racing_key) for g in (first, second, first, second)))
    assert [r.status_code for r in racing] == [202] * 4, [r.text for r in racing]
    raced_runs = {r.json()["workflow_id"] for r in racing}
    assert len(raced_runs) == 1 and run not in raced_runs

    for each in (run, *raced_runs):
        messages = await read_whole_run(http, second, each)
        assert_complete(messages)
        assert messages[-1].event == "done"
        assert _stages(messages).count("queued") == 1, _stages(messages)

    reused = await post(first, key, {"message": "a different question"})
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"] == "conflict"
    for bad in ("", "has space", "x" * 256, "caf\u00e9"):
        refused = await http.post(
            f"{first}/api/messages", json=message, headers={"Idempotency-Key": bad.encode()}
        )
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"] == "bad_request"


async def test_a_run_past_its_deadline_fails_saying_so_and_leaves_no_sandbox(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # An agent far too slow to answer within the 12 s the gateway gives every run.
    org = _org("late")
    async with (
        extra_gateway(stack, f"gateway-{org}", {"RUN_TIMEOUT_S": "12"}) as gateway,
        stack.dedicated_agent(org, env={"SCRIPTED_TOKEN_DELAY_S": "1"}),
    ):
        run = await start_run(http, gateway, "Take your time", org=org)
        messages = await asyncio.wait_for(read_whole_run(http, gateway, run), 30)
        view = (await http.get(f"{gateway}/api/runs/{run}")).json()
        described = await (await _temporal(stack)).get_workflow_handle(run).describe()

    assert_complete(messages)
    assert messages[-1].event == "failed", messages[-1].data
    assert messages[-1].json()["reason"] == "the run did not finish within its deadline of 12 s"
    assert "token" in [m.event for m in messages], "the agent was at work when time ran out"
    assert view["status"] == "failed", view
    timeout = described.raw_description.execution_config.workflow_execution_timeout
    assert timeout.ToTimedelta().total_seconds() == 12, "the deadline is the execution timeout"
    # The workflow ended the run itself, before Temporal's timeout would have cut it off.
    assert messages[-1].json()["ts"] - messages[0].json()["ts"] < 12e9
    assert not (stack.sandbox_root / run).exists(), "the sandbox was destroyed"


async def test_a_rate_limited_model_is_retried_more_often_than_failures_are(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # The model provider answers 429 four times in a row, after the first step streamed: more
    # refusals than the agent call's three allowed failures. Each retry starts with a reset.
    fake = FakeOpenAIServer(rate_limited=frozenset({2, 3, 4, 5}))
    org = _org("ratelimited")
    gateway = stack.gateway_urls[0]
    async with run_openai_server(fake) as base_url:
        model = {
            "AGENT_MODEL": "openai:gpt-4o-mini",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": base_url,
        }
        async with stack.dedicated_agent(org, env=model):
            run = await start_run(http, gateway, "Say hello from the sandbox", org=org)
            messages = await read_whole_run(http, gateway, run)

    assert_complete(messages)
    assert messages[-1].event == "done", messages[-1].data
    resets = [m.json()["attempt"] for m in messages if m.event == "reset"]
    assert resets == [2, 3, 4, 5], "each attempt after a mid-run refusal takes its output back"
    temporal = await _temporal(stack)
    history = temporal.get_workflow_handle(run).fetch_history_events()
    retried = [
        event.activity_task_started_event_attributes.last_failure
        async for event in history
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.attempt > 1
    ]
    assert len(retried) == 1
    assert retried[0].application_failure_info.type == "CapacityRefused"
    assert "model_rate_limited" in retried[0].message
