"""Traces across the whole path, from real processes exporting to a loopback OTLP receiver.

One message, end to end, on a stack of its own whose services export spans (OTLP over HTTP): the
run's spans from the gateway, the worker and the agent are one trace with a single root, holding
the workflow's activities, the agent call, its tool calls and SQL queries and the bridge's
publishes; its ID is the one in the run's first status event and in ``GET /api/runs/{id}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, read_whole_run
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.stacks import own_stack

pytestmark = pytest.mark.e2e

QUESTION = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
SERVICES = {"agentstream-gateway", "agentstream-worker", "agentstream-agent"}
# (service, span name) pairs the run's trace must hold: the request, the workflow's start and
# activities, the agent call on both sides, a tool call, a SQL query and a bridge publish.
EXPECTED = {
    ("agentstream-gateway", "run"),
    ("agentstream-gateway", "StartWorkflow:ChatWorkflow"),
    ("agentstream-worker", "RunWorkflow:ChatWorkflow"),
    ("agentstream-worker", "RunActivity:create_sandbox"),
    ("agentstream-worker", "RunActivity:call_agent"),
    ("agentstream-worker", "RunActivity:save_message"),
    ("agentstream-worker", "RunActivity:publish_terminal"),
    ("agentstream-worker", "POST /ai/agent"),
    ("agentstream-agent", "agent run"),
    ("agentstream-agent", "tool run_sql"),
    ("agentstream-agent", "sql query"),
    ("agentstream-gateway", "bridge publish"),
}
SPANS_TIMEOUT_S = 30.0
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, OtlpReceiver]]:
    """The loopback OTLP/HTTP endpoint the stack's services export to."""
    with otlp_receiver() as served:
        yield served


@pytest.fixture(scope="module")
async def traced_stack(
    receiver: tuple[str, OtlpReceiver], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalStack]:
    """A stack of its own whose gateway, worker and agent export their spans to ``receiver``."""
    endpoint, _ = receiver
    async with own_stack(
        tmp_path_factory,
        "traced-stack",
        replicas=1,
        token_delay_s="0.001",
        service_env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            # Exported within 100 ms of ending, so the test waits for spans, not for batches.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    ) as local:
        yield local


def _trace_settled(trace_id: str) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether the trace holds every expected span and every parent it names has arrived."""

    def ready(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        ids = {s.span_id for s in mine}
        return {(s.service, s.name) for s in mine} >= EXPECTED and all(
            not s.parent_id or s.parent_id in ids for s in mine
        )

    return ready


async def test_a_run_is_one_trace_across_gateway_worker_and_agent(
    traced_stack: LocalStack, receiver: tuple[str, OtlpReceiver]
) -> None:
    _, spans_in = receiver
    gateway = traced_stack.gateway_urls[0]
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0)) as http:
        # The client's own trace: the run links to it, and has a trace of its own.
        answer = await http.post(
            f"{gateway}/api/messages",
            json={"message": QUESTION},
            headers={"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"},
        )
        assert answer.status_code == 202, answer.text
        run = answer.json()["workflow_id"]
        messages = await read_whole_run(http, gateway, run)
        view = (await http.get(f"{gateway}/api/runs/{run}")).json()

    assert_complete(messages)
    assert messages[-1].event == "done"
    first_status = next(m.json() for m in messages if m.event == "status")
    assert first_status["stage"] == "queued"
    trace_id = first_status["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    assert view["trace_id"] == trace_id

    spans = await spans_in.wait_for(_trace_settled(trace_id), SPANS_TIMEOUT_S)
    assert spans_in.bad_requests == 0
    mine = [s for s in spans if s.trace_id == trace_id]
    assert {s.service for s in mine} == SERVICES
    roots = [s for s in mine if not s.parent_id]
    assert [(r.service, r.name) for r in roots] == [("agentstream-gateway", "run")]
    assert roots[0].attributes["agentstream.run"] == run
    assert trace_id != CLIENT_TRACE
    assert [linked for linked, _ in roots[0].links] == [CLIENT_TRACE]

    # Every span anyone recorded for this run is in its trace: no second trace, no orphan.
    about_run = [
        s
        for s in spans
        if run in (s.attributes.get("agentstream.run"), s.attributes.get("temporalWorkflowID"))
    ]
    assert about_run and {s.trace_id for s in about_run} == {trace_id}

    by_id = {s.span_id: s for s in mine}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        return by_id[span.parent_id]

    def served_by(span: ReceivedSpan, client: ReceivedSpan) -> bool:
        """Whether ``span`` descends from ``client`` through its own service's spans only (the
        web framework's request spans, where it makes them)."""
        above = parent(span)
        while above != client and above.service == span.service:
            above = parent(above)
        return above == client

    def one(service: str, name: str) -> ReceivedSpan:
        found = [s for s in mine if (s.service, s.name) == (service, name)]
        assert len(found) == 1, (service, name, found)
        return found[0]

    # The hops the propagation has to make, each checked as a parent link.
    agent_run = one("agentstream-agent", "agent run")
    agent_call = one("agentstream-worker", "POST /ai/agent")
    assert served_by(agent_run, agent_call)
    assert parent(agent_call) == one("agentstream-worker", "RunActivity:call_agent")
    run_sql = one("agentstream-agent", "tool run_sql")
    assert parent(run_sql) == agent_run
    assert any(parent(s) == run_sql for s in mine if s.name == "sql query")
    publishes = [s for s in mine if s.name == "bridge publish"]
    assert publishes and all(parent(s) == agent_run for s in publishes)
    # The publishes are the agent's posts: together they stored every event the agent sent.
    from_agent = [
        m
        for m in messages
        if m.event in ("token", "tool_start", "tool_end")
        or (m.event == "status" and m.json()["stage"] == "agent_started")
    ]
    assert sum(int(str(s.attributes["agentstream.events"])) for s in publishes) == len(from_agent)
