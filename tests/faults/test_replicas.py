"""Resume, replica crash, late join and fan-out: every client gets the whole run, proved."""

from __future__ import annotations

import asyncio
import random

import httpx

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, start_run
from tests.faults.streams import Client, keys, read_while_a_gateway_fails


async def test_resume_on_another_replica_after_a_partial_read(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    a, b, _c = fault_stack.gateway_urls
    run = await start_run(http, a, "resume across replicas")
    client = Client(http, [a], run)

    await client.read_once(a, stop_after=8)
    assert not client.messages[-1].terminal, "the first read ended mid-run"
    await client.read_once(b)

    assert_complete(client.messages)


async def test_client_resumes_on_b_when_replica_a_is_killed_mid_run(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # Replica A is also the agent's first callback bridge: its chunks fail over to B and C.
    a, b, _c = fault_stack.gateway_urls
    crash = fault_stack.processes["gateway-0"].kill
    client = await read_while_a_gateway_fails(
        http, fault_stack, "survive a replica crash", [a, b], "gateway-0", crash
    )
    messages = client.messages

    assert client.connections >= 2, "the client had to reconnect"
    assert not any(m.event == "reset" for m in messages), "the producer failed over, no retry"
    assert_complete(messages)


async def test_twenty_clients_on_three_replicas_joining_at_random_moments(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateways = fault_stack.gateway_urls
    run = await start_run(http, gateways[0], "fan out to many clients")
    rng = random.Random(20)
    first = Client(http, gateways, run)
    ended = asyncio.Event()

    async def join(index: int, delay: float, after_end: bool) -> list[SseMessage]:
        if after_end:
            await ended.wait()
        # Joining "at a random moment" is the scenario itself, not a wait for readiness.
        await asyncio.sleep(delay)
        client = Client(http, gateways[index % 3 :] + gateways[: index % 3], run)
        return await client.follow()

    async def watch_first() -> None:
        await first.follow()
        ended.set()

    joins = [join(i, rng.uniform(0, 3.0), after_end=i >= 16) for i in range(19)]
    results = await asyncio.gather(watch_first(), *joins)

    assert_complete(first.messages)
    for received in results[1:]:
        assert keys(received) == keys(first.messages)
