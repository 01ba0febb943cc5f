"""A run cancelled at any stage destroys its sandbox, and its stream and its record agree.

The worker of each test holds one stage open (``WORKER_TEST_STAGE_DELAYS``, a test aid) so the
cancellation certainly lands inside it.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from temporalio.client import Client as TemporalClient

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, start_run
from tests.faults.streams import Client


async def test_a_run_cancelled_while_its_sandbox_is_created_leaves_no_sandbox(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    org = f"mkcancel{uuid.uuid4().hex[:8]}"
    gateway = stack.gateway_urls[0]
    slow_create = {"WORKER_TEST_STAGE_DELAYS": "create_sandbox=20"}
    async with stack.dedicated_agent(org, worker_env=slow_create):
        run = await start_run(http, gateway, "cancel me while you set up", org=org)
        workspace = stack.sandbox_root / run
        client = Client(http, [gateway], run)
        async with client.following() as following:
            await client.wait_for(lambda m: m.json().get("stage") == "sandbox_creating")
            async with asyncio.timeout(10):
                # The worker made the sandbox and is still inside create_sandbox: another
                # process's state, so polling it is the only way to see it.
                while not await asyncio.to_thread(workspace.exists):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            cancelled = await http.post(f"{gateway}/api/runs/{run}/cancel")
            assert cancelled.status_code == 202, cancelled.text
            messages = await following

    assert_complete(messages)
    assert messages[-1].event == "cancelled", messages[-1].data
    assert "sandbox_ready" not in [m.json().get("stage") for m in messages]
    # Destroyed before the terminal event was published, not some time later.
    assert not workspace.exists(), "the sandbox being created was destroyed"
    view = (await http.get(f"{gateway}/api/runs/{run}")).json()
    assert view["status"] == "cancelled", view


async def test_a_run_cancelled_while_its_answer_is_saved_ends_done_everywhere(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    org = f"savecancel{uuid.uuid4().hex[:8]}"
    gateway = stack.gateway_urls[0]
    slow_save = {"WORKER_TEST_STAGE_DELAYS": "save_message=5"}
    async with stack.dedicated_agent(org, worker_env=slow_save):
        run = await start_run(http, gateway, "Count the words, then let me cancel", org=org)
        client = Client(http, [gateway], run)
        async with client.following() as following:
            await client.wait_for(lambda m: m.json().get("stage") == "saving")
            cancelled = await http.post(f"{gateway}/api/runs/{run}/cancel")
            assert cancelled.status_code == 202, cancelled.text
            messages = await following

    assert_complete(messages)
    # The answer was being stored when the cancellation came: the run is done, and says so.
    assert messages[-1].event == "done", messages[-1].data
    answer = messages[-1].json()["result"]["final_answer"]
    view = (await http.get(f"{gateway}/api/runs/{run}")).json()
    assert view["status"] == "completed", view
    assert view["result"]["final_answer"] == answer
    rows = await db.fetch("SELECT final_answer FROM messages WHERE run_id = $1", run)
    assert [r["final_answer"] for r in rows] == [answer]
    assert not (stack.sandbox_root / run).exists(), "the sandbox was destroyed"


async def test_a_run_terminated_after_its_answer_was_stored_ends_done_everywhere(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    org = f"termstored{uuid.uuid4().hex[:8]}"
    gateway = stack.gateway_urls[0]
    slow_end = {"WORKER_TEST_STAGE_DELAYS": "publish_terminal=60"}
    async with stack.dedicated_agent(org, worker_env=slow_end):
        run = await start_run(http, gateway, "Count the words, then get terminated", org=org)
        client = Client(http, [gateway], run)
        async with client.following() as following:
            await client.wait_for(lambda m: m.json().get("stage") == "saving")
            async with asyncio.timeout(30):
                # The row is written by the worker's process: polling the database is the only
                # way to see it, before the terminal event that the test holds back.
                while not await db.fetchval(  # noqa: ASYNC110
                    "SELECT count(*) FROM messages WHERE run_id = $1", run
                ):
                    await asyncio.sleep(0.05)
            temporal = await TemporalClient.connect(stack.temporal_address)
            await temporal.get_workflow_handle(run).terminate("an operator stepped in")
            # The gateway notices the closed workflow on the stream's first quiet spell.
            messages = await following

    assert_complete(messages)
    assert messages[-1].event == "done", messages[-1].data
    view = (await http.get(f"{gateway}/api/runs/{run}")).json()
    assert view["status"] == "completed", view
    assert view["result"]["final_answer"] == messages[-1].json()["result"]["final_answer"]
