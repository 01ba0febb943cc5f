"""``POST /api/messages`` answers once the run is queued; its workflow start follows.

The stream of a run must end however the start goes: done when it started, failed when Temporal
refused it, and failed when the gateway that answered died before starting it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from nats.aio.client import Client as NATS
from temporalio.client import Client as TemporalClient
from ulid import ULID

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.message_store import MessageStore, open_pool
from agentstream.runtime.nats_contract import Producer, publish_event
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal_codec import data_converter
from gateway.terminal_guard import publish_missing_terminal
from gateway.unstarted import KEYED_QUEUED_PRODUCER, QUEUED_PRODUCER, START_FAILED_REASON
from schemas import DEFAULT_ORG, Stage, Status
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.stacks import extra_gateway

# The development server's payload limit is 2 MB: a start carrying more is refused for good.
_PAST_TEMPORALS_LIMIT = 3_000_000
_HOUR_NS = 3_600 * 10**9


async def _temporal(stack: LocalStack) -> TemporalClient:
    return await TemporalClient.connect(stack.temporal_address, data_converter=data_converter)


async def _queue(
    nc: NATS, run: str, *, ago_ns: int = 0, producer: Producer = QUEUED_PRODUCER
) -> None:
    """Store ``run``'s ``queued`` as a gateway does before it starts the workflow."""
    queued = Status(run=run, stage=Stage.QUEUED, ts=time.time_ns() - ago_ns)
    await publish_event(nc, DEFAULT_ORG, queued, producer=producer)


async def test_a_run_answered_before_its_start_is_known_at_once_and_ends_done(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "Count the words in this message, please.")
    # The replica that answered lets its start end first, so Temporal's word comes back.
    view = await http.get(f"{gateway}/api/runs/{run}")

    messages = await read_whole_run(http, gateway, run)

    assert view.status_code == 200, view.text
    assert view.json()["status"] == "running", view.json()
    assert_complete(messages)
    assert messages[-1].event == "done", messages[-1].data
    stages = [m.json()["stage"] for m in messages if m.event == "status"]
    assert stages[:2] == ["queued", "sandbox_creating"], stages


async def test_a_start_temporal_refuses_ends_the_stream_failed_and_frees_its_place_in_line(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # No worker serves the org, so a run that did start stays open and holds the line of one.
    org = f"refused{uuid.uuid4().hex[:8]}"
    room = str(2 * _PAST_TEMPORALS_LIMIT)
    env = {"MAX_BODY_BYTES": room, "MAX_MESSAGE_CHARS": room, "MAX_OPEN_RUNS_PER_ORG": "1"}
    started: list[str] = []
    async with extra_gateway(stack, f"gateway-{org}", env) as gateway:
        try:
            refused = await start_run(http, gateway, "x" * _PAST_TEMPORALS_LIMIT, org=org)
            messages = await read_whole_run(http, gateway, refused)
            view = (await http.get(f"{gateway}/api/runs/{refused}")).json()
            metrics = (await http.get(f"{gateway}/metrics")).text
            # The refused run holds no place in the line: the next one takes it...
            started.append(await start_run(http, gateway, "a question that fits", org=org))
            # ... and the one after is told to come back.
            over = await http.post(f"{gateway}/api/messages", json={"message": "more", "org": org})
            # Answered once the replica's start of the run has ended: Temporal knows it.
            admitted = (await http.get(f"{gateway}/api/runs/{started[-1]}")).json()
        finally:
            temporal = await _temporal(stack)
            for run in started:
                await temporal.get_workflow_handle(run).terminate(reason="test cleanup")

    assert_complete(messages)
    assert [m.event for m in messages] == ["status", "failed"], [m.event for m in messages]
    assert messages[-1].json()["reason"] == START_FAILED_REASON
    assert view["status"] == "failed", view
    assert "agentstream_run_start_failures 1\n" in metrics, metrics
    assert over.status_code == 429, over.text
    assert admitted["status"] == "running", admitted


async def test_a_run_its_gateway_never_started_ends_failed_for_every_reader_once(
    stack: LocalStack, http: httpx.AsyncClient, nc: NATS
) -> None:
    # What a gateway that died between its answer and the start leaves: queued long ago, and a
    # run Temporal never heard of.
    run = f"run_{ULID()}"
    await _queue(nc, run, ago_ns=_HOUR_NS)

    # A reader on each replica: both replicas' guards try to end it, one end is stored.
    readers = [read_whole_run(http, gateway, run) for gateway in stack.gateway_urls]
    received = await asyncio.wait_for(asyncio.gather(*readers), 30)
    stored = [e async for e in HistoryReader(nc).read(DEFAULT_ORG, run, after=0)]
    view = (await http.get(f"{stack.gateway_urls[0]}/api/runs/{run}")).json()

    for messages in received:
        assert_complete(messages)
        assert [m.event for m in messages] == ["status", "failed"], [m.event for m in messages]
        assert messages[-1].json()["reason"] == START_FAILED_REASON
    assert [m.id for m in received[0]] == [m.id for m in received[1]]
    assert [e.type for e in stored] == ["status", "failed"]
    assert view["status"] == "failed", view


async def test_the_guard_leaves_runs_within_the_grace_and_keyed_runs_to_their_start(
    stack: LocalStack, http: httpx.AsyncClient, nc: NATS
) -> None:
    fresh, keyed = f"run_{ULID()}", f"run_{uuid.uuid4().hex}"
    await _queue(nc, fresh)
    # A keyed run is started before its answer; one whose start failed waits for the
    # client's retry, however long ago it was queued.
    await _queue(nc, keyed, ago_ns=_HOUR_NS, producer=KEYED_QUEUED_PRODUCER)
    gateway = stack.gateway_urls[0]
    history = HistoryReader(nc)
    temporal = await _temporal(stack)
    pool = await open_pool(stack.database_url, max_size=1)
    try:
        store = MessageStore(pool)
        fresh_view = (await http.get(f"{gateway}/api/runs/{fresh}")).json()
        keyed_view = await http.get(f"{gateway}/api/runs/{keyed}")
        ended = [
            await publish_missing_terminal(temporal, nc, history, store, run)
            for run in (fresh, keyed)
        ]
        fresh_last = await history.last_event(DEFAULT_ORG, fresh)
        keyed_last = await history.last_event(DEFAULT_ORG, keyed)
        # The same guard past a grace of nothing ends the fresh run.
        ended_at_once = await publish_missing_terminal(
            temporal, nc, history, store, fresh, org=DEFAULT_ORG, start_grace_s=0.0
        )
        ended_last = await history.last_event(DEFAULT_ORG, fresh)
    finally:
        await pool.close()

    assert fresh_view["status"] == "running", fresh_view
    assert keyed_view.status_code == 404, keyed_view.text
    assert ended == [False, False]
    assert fresh_last is not None and fresh_last.type == "status"
    assert keyed_last is not None and keyed_last.type == "status"
    assert ended_at_once
    assert ended_last is not None and ended_last.type == "failed"
