"""Producer faults: a worker crash, lost bridge answers, a NATS restart."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, start_run
from tests.fakes.dropping_proxy import DroppingProxy
from tests.faults.streams import Client

AGENT_EVENTS = {"token", "tool_start", "tool_end"}


@pytest.fixture
async def db(fault_stack: LocalStack) -> asyncpg.Connection:
    conn = await asyncpg.connect(fault_stack.database_url)
    yield conn
    await conn.close()


async def test_worker_killed_mid_agent_is_replaced_and_the_client_sees_reset_then_the_rest(
    fault_stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    a, b, _c = fault_stack.gateway_urls
    run = await start_run(http, a, "outlive a worker crash")
    client = Client(http, [a, b], run)
    async with client.following() as following:
        await client.wait_for(lambda m: m.event == "tool_start")
        await fault_stack.processes["worker"].kill()
        await fault_stack.restart("worker")
        messages = await following

    assert_complete(messages)
    types = [m.event for m in messages]
    assert types[-1] == "done"
    reset_at = types.index("reset")
    assert types.index("tool_start") < reset_at, "reset follows the first attempt's output"
    assert messages[reset_at].json()["attempt"] == 2
    after = [m.json() for m in messages[reset_at + 1 :] if m.event in AGENT_EVENTS]
    assert after and all(e["attempt"] == 2 for e in after), "later events carry attempt 2"
    final = messages[-1].json()["result"]["final_answer"]
    assert final in "".join(e["text"] for e in after if e["type"] == "token")
    rows = await db.fetch("SELECT final_answer FROM messages WHERE run_id = $1", run)
    assert [r["final_answer"] for r in rows] == [final]


async def test_bridge_answer_lost_after_store_is_retried_and_stored_once(
    fault_stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    a = fault_stack.gateway_urls[0]
    proxy = DroppingProxy(a, drop_first=3)
    async with proxy.running() as proxy_url:
        worker = await fault_stack.start_worker(
            ["flaky"], name="worker-flaky", env={"GATEWAY_URL": proxy_url}
        )
        try:
            run = await start_run(http, a, "lose the bridge's answers", org="flaky")
            messages = await Client(http, [a], run).follow()
        finally:
            await worker.stop()

    assert proxy.dropped == 3, "three stored posts never got their answer"
    assert_complete(messages)
    agent_events = [m.json() for m in messages if m.event in AGENT_EVENTS | {"status"}]
    numbered = [(e["attempt"], e["n"]) for e in agent_events if e["type"] != "status"]
    assert len(numbered) == len(set(numbered)), "no event stored twice"
    assert messages[-1].event == "done"
    assert await db.fetchval("SELECT count(*) FROM messages WHERE run_id = $1", run) == 1


async def test_nats_restart_mid_run_loses_and_doubles_nothing(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    a, b, c = fault_stack.gateway_urls
    run = await start_run(http, a, "survive a NATS restart")
    client = Client(http, [a, b, c], run)
    async with client.following() as following:
        await client.wait_for(lambda m: m.event == "tool_start")
        await fault_stack.restart("nats")
        messages = await following

    assert messages[-1].event == "done"
    assert_complete(messages)
