"""SSE clients that leave as their stream opens leave no live subscription on any replica.

Through the whole HTTP path (the gateway ends a leaving client's response), checked on the NATS
server's monitoring endpoint. ``tests/integration/test_live_hub_churn.py`` holds the set-up
window open to hit it every time; here the timing is real.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import httpx
from temporalio.client import Client

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.temporal_codec import data_converter
from tests.e2e.runs import start_run

ROUNDS = 7
# Per round and replica: under the gateway's 64 open streams per client address even while the
# round before is still being closed (the server sees its clients leave a moment after they do).
CLIENTS = 30
SETTLE_S = 15.0


async def _live_subscriptions(http: httpx.AsyncClient, stack: LocalStack, run: str) -> list[int]:
    """Per gateway connection on the NATS server: how many live subscriptions ``run`` has."""
    reply = await http.get(f"{stack.nats_monitor_url}/connz", params={"subs": "detail"})
    reply.raise_for_status()
    counts = collections.Counter(
        conn["cid"]
        for conn in reply.json()["connections"]
        if conn.get("name") == "gateway"
        for sub in conn.get("subscriptions_list_detail", [])
        if sub["subject"].startswith("live.") and sub["subject"].endswith(f".{run}")
    )
    return sorted(counts.values())


async def _settled(
    http: httpx.AsyncClient, stack: LocalStack, run: str, expected: list[int]
) -> list[int]:
    """The run's subscriptions once they are ``expected``, or as they are after SETTLE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while (found := await _live_subscriptions(http, stack, run)) != expected:
        if loop.time() > deadline:
            return found
        # Polling: the server offers no event for a subscription going away.
        await asyncio.sleep(0.1)
    return found


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_clients_leaving_as_their_stream_opens_leave_no_live_subscription(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # A run no worker serves: its stream stays open, so every client sets up a live subscription.
    run = await start_run(http, stack.gateway_urls[0], "nobody will answer", org="nobody")

    async def leave_early(gateway: str) -> None:
        async with http.stream("GET", f"{gateway}/api/stream/{run}") as response:
            assert response.status_code == 200
            # The first bytes are the stream's opening comment, sent just before its live
            # subscription is made: leave right there.
            async for _ in response.aiter_raw():
                break

    stayer_saw_stream = asyncio.Event()

    async def stay(gateway: str) -> None:
        async with http.stream("GET", f"{gateway}/api/stream/{run}") as response:
            async for line in response.aiter_lines():
                if line.startswith("event: status"):
                    stayer_saw_stream.set()

    staying = asyncio.create_task(stay(stack.gateway_urls[0]))
    try:
        async with asyncio.timeout(30):
            await stayer_saw_stream.wait()
        for _ in range(ROUNDS):
            await asyncio.gather(
                *(leave_early(gw) for gw in stack.gateway_urls for _ in range(CLIENTS))
            )
        # The one client still watching keeps exactly one subscription, on its own replica.
        assert await _settled(http, stack, run, [1]) == [1]
        await _stop(staying)
        assert await _settled(http, stack, run, []) == [], "subscriptions left behind"
    finally:
        await _stop(staying)
        temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
        await temporal.get_workflow_handle(run).terminate("test over")
