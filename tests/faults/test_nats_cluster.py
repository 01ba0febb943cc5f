"""A three-node NATS cluster losing the leader of stream RUNS mid-run: nothing is lost.

Stream RUNS is replicated on every node (R3). Killing its leader leaves the two others to
elect a new one; meanwhile the stream stores nothing, the callback bridge answers 503 and the
agent's chunk sink posts the same events again until they are stored, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import nats
from nats.js.api import PeerInfo

from agentstream.devstack.nats_cluster import NatsNode, stream_leader
from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.nats_contract import STREAM_NAME
from tests.e2e.runs import assert_complete, start_run
from tests.faults.streams import Client
from tests.stacks import stack_fixture

log = logging.getLogger(__name__)

NODES = 3
RUNS = 3
# Within the chunk sink's retry deadline (30 s): a longer election would fail the attempt.
FAILOVER_BOUND_S = 20.0
CATCH_UP_BOUND_S = 30.0
# Events the agent posts through the bridge, numbered 0, 1, … per attempt by its chunk sink.
AGENT_EVENTS = {"token", "tool_start", "tool_end", "error"}


# Three NATS nodes, two gateway replicas, a worker and an agent whose runs last seconds.
cluster_stack = stack_fixture(
    "nats-cluster",
    replicas=2,
    nats_nodes=NODES,
    # Slow enough that a leader election (seconds) happens while the runs stream.
    token_delay_s="0.03",
    service_env={"SSE_IDLE_CHECK_S": "1", "SSE_TERMINAL_CHECK_S": "3"},
)


async def new_leader(nodes: list[NatsNode], old: str, timeout_s: float) -> str:
    """The stream's leader once it is another node than ``old``."""
    async with asyncio.timeout(timeout_s):
        while True:
            leader = await stream_leader(nodes, STREAM_NAME)
            if leader is not None and leader != old:
                return leader
            # Polling the monitoring endpoint: an election announces itself to no client.
            await asyncio.sleep(0.05)


async def caught_up(stack: LocalStack, timeout_s: float) -> None:
    """Wait until every replica of RUNS is current (a restarted node serves before that)."""
    async with asyncio.timeout(timeout_s):
        while True:
            _leader, followers = await replicas_of_runs(stack)
            if len(followers) == NODES - 1 and all(
                peer.current and not peer.offline for peer in followers
            ):
                return
            # Polling stream info: a replica catching up announces itself to no client.
            await asyncio.sleep(0.1)


def agent_numbers(messages: list[SseMessage]) -> list[int]:
    """The chunk sink's numbers ``n`` of the agent's events: 0, 1, … when none was lost."""
    numbers = []
    for message in messages:
        event = message.json()
        if message.event in AGENT_EVENTS or event.get("stage") == "agent_started":
            numbers.append(int(event["n"]))
    return numbers


async def replicas_of_runs(stack: LocalStack) -> tuple[str, list[PeerInfo]]:
    """Stream RUNS's leader and its other replicas, as JetStream reports them."""
    nc = await nats.connect(stack.nats_url.split(","))
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
    finally:
        await nc.close()
    assert info.config.num_replicas == NODES
    assert info.cluster is not None and info.cluster.leader is not None
    return info.cluster.leader, info.cluster.replicas or []


async def test_runs_is_replicated_on_every_node(cluster_stack: LocalStack) -> None:
    leader, followers = await replicas_of_runs(cluster_stack)
    assert {leader, *(peer.name for peer in followers)} == {
        n.name for n in cluster_stack.nats_nodes
    }
    assert all(peer.current for peer in followers), followers


async def test_every_run_survives_its_stream_leader_being_killed(
    cluster_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateways = cluster_stack.gateway_urls
    runs = [
        await start_run(http, gateways[i % 2], f"survive a NATS leader crash {i}")
        for i in range(RUNS)
    ]
    clients = [
        Client(http, gateways[i % 2 :] + gateways[: i % 2], run) for i, run in enumerate(runs)
    ]
    agent_log = cluster_stack.processes["agent"].log_path
    retries_before = agent_log.read_text(encoding="utf-8").count("retrying")
    async with contextlib.AsyncExitStack() as following:
        tasks = [await following.enter_async_context(client.following()) for client in clients]
        for client in clients:
            await client.wait_for(lambda m: m.event == "token")
        leader = await stream_leader(cluster_stack.nats_nodes, STREAM_NAME)
        assert leader is not None
        killed_at = time.monotonic()
        await cluster_stack.processes[leader].kill()
        try:
            elected = await new_leader(cluster_stack.nats_nodes, leader, FAILOVER_BOUND_S)
            failover_s = time.monotonic() - killed_at
            results = [await task for task in tasks]
        finally:
            await cluster_stack.restart(leader)
    log.warning("RUNS leader %s killed: %s elected after %.1f s", leader, elected, failover_s)

    for received in results:
        assert_complete(received)
        assert received[-1].event == "done", received[-1].data
        # The bridge's retries were enough: no attempt failed, so no reset and no second attempt.
        assert not any(m.event == "reset" for m in received)
        assert {m.json()["attempt"] for m in received} == {1}
        # Every event the agent produced was stored, once, in the order it produced them.
        numbers = agent_numbers(received)
        assert numbers == list(range(len(numbers))), numbers
    # The kill did reach the producers: the bridge refused posts while no leader was elected.
    retries = agent_log.read_text(encoding="utf-8").count("retrying") - retries_before
    assert retries > 0, "no chunk post was refused: the runs were not streaming during the kill"
    # Restarted, the node catches up and is a current replica again.
    await caught_up(cluster_stack, CATCH_UP_BOUND_S)
