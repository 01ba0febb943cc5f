"""The worker's publishes outlast a stream without a leader: a real three-node cluster, two
nodes down (no quorum, so no leader for RUNS), then back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from agentstream.devstack.nats_cluster import (
    NatsNode,
    jetstream_healthy,
    stream_leader,
    write_configs,
)
from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path
from agentstream.runtime.nats_contract import (
    STREAM_NAME,
    AppendBusy,
    Producer,
    ensure_runs_stream,
    publish_event,
)
from schemas import Stage, Status
from worker.patient_publish import publish_patiently

READY_S = 30.0


class Cluster:
    """Three nats-server processes on loopback, any of which can be stopped and started."""

    def __init__(self, state: Path) -> None:
        self.nodes = [
            NatsNode(f"nats-{i}", free_port(), free_port(), free_port(), state / f"nats-{i}")
            for i in range(3)
        ]
        write_configs(self.nodes, None)
        self.processes = [
            ServiceProcess(
                node.name, [binary_path("nats-server"), "-c", str(node.config_path)], {}, state
            )
            for node in self.nodes
        ]
        # The nodes a test killed, to start again.
        self.down: list[int] = []

    async def start(self, *indices: int) -> None:
        """Start those nodes and wait until they serve JetStream."""
        for i in indices:
            await self.processes[i].start()
        await asyncio.gather(
            *(
                self.processes[i].wait_until(lambda i=i: jetstream_healthy(self.nodes[i]), READY_S)
                for i in indices
            )
        )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A running three-node cluster with stream RUNS on every node; stopped afterwards."""
    running = Cluster(tmp_path)
    try:
        await running.start(0, 1, 2)
        yield running
    finally:
        for process in running.processes:
            await process.stop()


async def elected(cluster: Cluster) -> str:
    """The name of the node leading RUNS, once one is elected."""
    async with asyncio.timeout(READY_S):
        while True:
            leader = await stream_leader(cluster.nodes, STREAM_NAME)
            if leader is not None:
                return leader
            # Polling the monitoring endpoint: an election announces itself to no client.
            await asyncio.sleep(0.05)


@pytest.fixture
async def leaderless(cluster: Cluster) -> AsyncIterator[NATS]:
    """A worker's connection to a follower of RUNS, once the leader and the other follower are
    killed: no quorum, so no leader can be elected until they are back."""
    urls = [node.url for node in cluster.nodes]
    conn = await nats.connect(urls)
    try:
        await ensure_runs_stream(conn.jetstream(), max_age_s=3600, replicas=3)
        leader = await elected(cluster)
    finally:
        await conn.close()
    # Connected to a follower, a store is refused at once (no responders) instead of waiting
    # on a leader that cannot commit it.
    survivor = next(i for i, node in enumerate(cluster.nodes) if node.name != leader)
    for i in range(len(cluster.nodes)):
        if i != survivor:
            await cluster.processes[i].kill()
    cluster.down = [i for i in range(len(cluster.nodes)) if i != survivor]
    conn = await nats.connect(cluster.nodes[survivor].url)
    try:
        yield conn
    finally:
        await conn.close()


def saving(run: str) -> Status:
    return Status(run=run, stage=Stage.SAVING)


async def stored_count(nc: NATS, run: str) -> int:
    info = await nc.jetstream().stream_info(STREAM_NAME, subjects_filter=f"runs.default.{run}")
    return (info.state.subjects or {}).get(f"runs.default.{run}", 0)


async def test_a_store_waits_for_the_stream_to_have_a_leader_again(
    cluster: Cluster, leaderless: NATS, caplog: pytest.LogCaptureFixture
) -> None:
    # What the worker did before: one refusal, and its activity attempt failed with it.
    with pytest.raises(AppendBusy):
        await publish_event(
            leaderless, "default", saving("run_plain"), producer=Producer.SAVE_MESSAGE
        )

    with caplog.at_level(logging.WARNING, logger="worker.patient_publish"):
        storing = asyncio.create_task(
            publish_patiently(
                leaderless, "default", saving("run_patient"), producer=Producer.SAVE_MESSAGE
            )
        )
        try:
            await cluster.start(*cluster.down)
            seq = await asyncio.wait_for(storing, 30.0)
        finally:
            storing.cancel()
            with contextlib.suppress(asyncio.CancelledError, AppendBusy):
                await storing

    assert seq > 0
    assert any("stream busy" in r.getMessage() for r in caplog.records), "it was refused first"
    # Every try carried the same Nats-Msg-Id: stored once.
    assert await stored_count(leaderless, "run_patient") == 1


async def test_a_store_gives_up_once_its_patience_is_spent(leaderless: NATS) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AppendBusy):
        await publish_patiently(
            leaderless,
            "default",
            saving("run_gives_up"),
            producer=Producer.SAVE_MESSAGE,
            patience_s=1.0,
        )
    # Bounded by the patience plus one try's own timeout.
    assert loop.time() - started < 1.0 + 5.0 + 1.0
