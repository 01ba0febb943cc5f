"""A run cancelled at any stage destroys its sandbox, and its stream and its record agree.

The worker of each test holds one stage open (``WORKER_TEST_STAGE_DELAYS``, a test aid) so the
cancellation certainly lands inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
from temporalio.client import Client as TemporalClient

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, start_run
from tests.faults.streams import Client


@dataclass
class HeldRun:
    """A run whose worker holds one stage open, followed by a client while the test acts."""

    gateway: str
    run: str
    client: Client
    following: asyncio.Task[list[SseMessage]]

    async def cancel(self, http: httpx.AsyncClient) -> None:
        """Ask the gateway to cancel the run."""
        cancelled = await http.post(f"{self.gateway}/api/runs/{self.run}/cancel")
        assert cancelled.status_code == 202, cancelled.text


@contextlib.asynccontextmanager
async def held_run(
    stack: LocalStack, http: httpx.AsyncClient, prompt: str, *, held: str, until: str
) -> AsyncIterator[HeldRun]:
    """A run of a fresh org whose worker delays a stage (``held``: ``stage=seconds``).

    Entered once the run has announced the stage ``until``.
    """
    org = f"held{uuid.uuid4().hex[:8]}"
    gateway = stack.gateway_urls[0]
    async with stack.dedicated_agent(org, worker_env={"WORKER_TEST_STAGE_DELAYS": held}):
        run = await start_run(http, gateway, prompt, org=org)
        client = Client(http, [gateway], run)
        async with client.following() as following:
            await client.wait_for(lambda m: m.json().get("stage") == until)
            yield HeldRun(gateway, run, client, following)


async def _assert_done_everywhere(
    http: httpx.AsyncClient, held: HeldRun, messages: list[SseMessage]
) -> str:
    """The stream and the run's view agree that it is done, with one answer; the answer."""
    assert_complete(messages)
    assert messages[-1].event == "done", messages[-1].data
    answer: str = messages[-1].json()["result"]["final_answer"]
    view = (await http.get(f"{held.gateway}/api/runs/{held.run}")).json()
    assert view["status"] == "completed", view
    assert view["result"]["final_answer"] == answer
    return answer


async def test_a_run_cancelled_while_its_sandbox_is_created_leaves_no_sandbox(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    prompt = "cancel me while you set up"
    async with held_run(
        stack, http, prompt, held="create_sandbox=20", until="sandbox_creating"
    ) as held:
        workspace = stack.sandbox_root / held.run
        async with asyncio.timeout(10):
            # The worker made the sandbox and is still inside create_sandbox: another
            # process's state, so polling it is the only way to see it.
            while not await asyncio.to_thread(workspace.exists):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await held.cancel(http)
        messages = await held.following

    assert_complete(messages)
    assert messages[-1].event == "cancelled", messages[-1].data
    assert "sandbox_ready" not in [m.json().get("stage") for m in messages]
    # Destroyed before the terminal event was published, not some time later.
    assert not workspace.exists(), "the sandbox being created was destroyed"
    view = (await http.get(f"{held.gateway}/api/runs/{held.run}")).json()
    assert view["status"] == "cancelled", view


async def test_a_run_cancelled_while_its_answer_is_saved_ends_done_everywhere(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    prompt = "Count the words, then let me cancel"
    async with held_run(stack, http, prompt, held="save_message=5", until="saving") as held:
        await held.cancel(http)
        messages = await held.following

    # The answer was being stored when the cancellation came: the run is done, and says so.
    answer = await _assert_done_everywhere(http, held, messages)
    rows = await db.fetch("SELECT final_answer FROM messages WHERE run_id = $1", held.run)
    assert [r["final_answer"] for r in rows] == [answer]
    assert not (stack.sandbox_root / held.run).exists(), "the sandbox was destroyed"


async def test_a_run_terminated_after_its_answer_was_stored_ends_done_everywhere(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    prompt = "Count the words, then get terminated"
    async with held_run(stack, http, prompt, held="publish_terminal=60", until="saving") as held:
        async with asyncio.timeout(30):
            # The row is written by the worker's process: polling the database is the only
            # way to see it, before the terminal event that the test holds back.
            while not await db.fetchval(  # noqa: ASYNC110
                "SELECT count(*) FROM messages WHERE run_id = $1", held.run
            ):
                await asyncio.sleep(0.05)
        temporal = await TemporalClient.connect(stack.temporal_address)
        await temporal.get_workflow_handle(held.run).terminate("an operator stepped in")
        # The gateway notices the closed workflow on the stream's first quiet spell.
        messages = await held.following

    await _assert_done_everywhere(http, held, messages)
