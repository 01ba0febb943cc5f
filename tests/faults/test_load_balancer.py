"""deploy/nginx/nginx.conf in front of three replicas: failover and unbuffered streaming."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agentstream.devstack.nginx import LoadBalancer, load_balancer
from agentstream.devstack.sse_client import read_stream
from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete
from tests.faults.streams import Client

# Per-event lag through nginx over the same event read straight from a gateway. Unbuffered, it
# is the cost of one more loopback hop (well under a millisecond); buffered, nginx forwards
# events only when a buffer fills or the run ends, seconds later.
MEDIAN_LAG_BOUND_S = 0.005
MAX_LAG_BOUND_S = 0.050


@pytest.fixture(scope="module")
async def lb(
    fault_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LoadBalancer]:
    """nginx with the committed config, the fault stack's three gateways as its upstreams."""
    async with load_balancer(fault_stack.gateway_urls, tmp_path_factory.mktemp("nginx")) as lb:
        yield lb


async def post_message(http: httpx.AsyncClient, base_url: str, message: str) -> str:
    """Start a run through ``base_url``; its run ID."""
    response = await http.post(f"{base_url}/api/messages", json={"message": message})
    assert response.status_code == 202, response.text
    return str(response.json()["workflow_id"])


async def test_clients_resume_through_nginx_when_a_replica_is_killed_mid_run(
    fault_stack: LocalStack, lb: LoadBalancer, http: httpx.AsyncClient
) -> None:
    runs = [await post_message(http, lb.url, f"through the load balancer {i}") for i in range(3)]
    # Two clients per run, all on nginx's one URL: least_conn spreads six streams over three
    # replicas, so the killed one carries some of them.
    clients = [Client(http, [lb.url], run) for run in runs for _ in range(2)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            tasks = [await stack.enter_async_context(c.following()) for c in clients]
            await asyncio.gather(*(c.wait_for(lambda m: m.event == "token") for c in clients))
            await fault_stack.processes["gateway-0"].kill()
            results = await asyncio.gather(*tasks)
    finally:
        await fault_stack.restart("gateway-0")

    assert any(c.connections >= 2 for c in clients), "some stream was cut and resumed"
    for messages in results:
        assert_complete(messages)


async def arrivals(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    """When each token event of the run arrived on one connection (monotonic seconds)."""
    seen: dict[str, float] = {}
    stream = read_stream(http, url)
    async with contextlib.aclosing(stream):
        async for message in stream:
            if message.event == "token" and message.id is not None:
                seen[message.id] = time.monotonic()
    return seen


async def test_nginx_forwards_each_event_as_it_arrives(
    fault_stack: LocalStack, lb: LoadBalancer, http: httpx.AsyncClient
) -> None:
    direct = fault_stack.gateway_urls[1]
    run = await post_message(http, direct, "no buffering between the replica and the browser")
    # Both connections open while the run is still queued: its tokens come later, live to both.
    async with asyncio.timeout(RUN_TIMEOUT_S):
        via_direct, via_nginx = await asyncio.gather(
            arrivals(http, f"{direct}/api/stream/{run}"),
            arrivals(http, f"{lb.url}/api/stream/{run}"),
        )

    assert via_direct.keys() == via_nginx.keys() and len(via_direct) >= 10, (
        len(via_direct),
        len(via_nginx),
    )
    lags = sorted(via_nginx[i] - via_direct[i] for i in via_direct)
    median, worst = statistics.median(lags), lags[-1]
    print(
        f"lag through nginx over {len(lags)} tokens: median {median * 1e3:.2f} ms, "
        f"max {worst * 1e3:.2f} ms, min {lags[0] * 1e3:.2f} ms"
    )
    assert median < MEDIAN_LAG_BOUND_S, lags
    assert worst < MAX_LAG_BOUND_S, lags
