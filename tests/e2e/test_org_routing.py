"""A run waits on its org's task queue: only a worker serving that org picks it up."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
from temporalio.client import Client as TemporalClient

from agentstream.devstack.processes import ServiceProcess
from agentstream.devstack.sse_client import SseMessage, read_stream
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.temporal_codec import data_converter
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete

SAMPLE_PROMPT = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
QUIET_WINDOW_S = 3.0


async def _pump(http: httpx.AsyncClient, url: str, into: asyncio.Queue[SseMessage]) -> None:
    """Every event of one SSE connection, into a queue the test can wait on with a deadline."""
    # The pump is cancelled mid-stream: its connection is closed then.
    async with contextlib.aclosing(read_stream(http, url)) as messages:
        async for message in messages:
            await into.put(message)


async def _assert_quiet(events: asyncio.Queue[SseMessage], why: str) -> None:
    """Nothing arrives on the stream during the window."""
    try:
        message = await asyncio.wait_for(events.get(), QUIET_WINDOW_S)
    except TimeoutError:
        return
    raise AssertionError(f"{why}, yet the stream got {message.event}: {message.data}")


async def test_run_waits_for_a_worker_of_its_own_org(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    temporal = await TemporalClient.connect(stack.temporal_address, data_converter=data_converter)
    posted = await http.post(
        f"{gateway}/api/messages", json={"message": SAMPLE_PROMPT, "org": "acme"}
    )
    assert posted.status_code == 202, posted.text
    run, stream_url = posted.json()["workflow_id"], posted.json()["stream_url"]
    handle = temporal.get_workflow_handle(run)

    events: asyncio.Queue[SseMessage] = asyncio.Queue()
    # The stream URL as a browser gets it (with its stream token when the gateway issues one).
    pump = asyncio.create_task(_pump(http, stream_url, events))
    globex: ServiceProcess | None = None
    acme: ServiceProcess | None = None
    completed = False
    try:
        # Queued at once, and then nothing: no worker polls agent-acme.
        first = await asyncio.wait_for(events.get(), 10)
        assert (first.event, first.json()["stage"]) == ("status", "queued"), first
        await _assert_quiet(events, "no worker serves acme")
        view = (await http.get(f"{gateway}/api/runs/{run}")).json()
        assert view["status"] == "running", view
        described = await handle.describe()
        assert described.task_queue == "agent-acme"

        # A worker for another org does not take it.
        globex = await stack.start_worker(["globex"], name="worker-globex")
        await _assert_quiet(events, "only globex (and default) are served")
        view = (await http.get(f"{gateway}/api/runs/{run}")).json()
        assert view["status"] == "running", view

        # acme's worker does.
        acme = await stack.start_worker(["acme"], name="worker-acme")
        rest: list[SseMessage] = [first]

        async def until_terminal() -> None:
            while not rest[-1].terminal:
                rest.append(await events.get())

        await asyncio.wait_for(until_terminal(), RUN_TIMEOUT_S)
        completed = True
        assert_complete(rest)
        assert rest[-1].event == "done", [m.event for m in rest]
        stages = [m.json()["stage"] for m in rest if m.event == "status"]
        assert stages[0] == "queued" and "agent_started" in stages, stages
        result = rest[-1].json()["result"]
        assert result["final_answer"].strip()
        assert result["sql_queries"], result
        await asyncio.wait_for(handle.result(), 30)

        # Every task of the run went to acme's worker; globex's never saw one.
        assert acme.pid is not None and globex.pid is not None
        acme_identity = f"{acme.pid}@{socket.gethostname()}"
        activity_identities: list[str] = []
        workflow_identities: list[str] = []
        history = await handle.fetch_history()
        for event in history.events:
            if event.HasField("activity_task_started_event_attributes"):
                activity_identities.append(event.activity_task_started_event_attributes.identity)
            if event.HasField("workflow_task_started_event_attributes"):
                workflow_identities.append(event.workflow_task_started_event_attributes.identity)
        assert len(activity_identities) >= 5, activity_identities  # sandbox, agent, save, …
        assert set(activity_identities) == {acme_identity}, (acme_identity, activity_identities)
        assert set(workflow_identities) == {acme_identity}, (acme_identity, workflow_identities)
        assert not any(
            i.startswith(f"{globex.pid}@") for i in activity_identities + workflow_identities
        )
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await pump
        if not completed:
            # Leave no run waiting on agent-acme for the rest of the session.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.terminate(reason="test_org_routing failed"), 10)
        for worker in (acme, globex):
            if worker is not None:
                await worker.stop()
