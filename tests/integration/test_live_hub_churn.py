"""Clients that leave while their run's live subscription is being made leave nothing behind.

Checked where it matters: on the NATS server, through its monitoring endpoint, which lists the
subscriptions each connection holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path
from agentstream.runtime.nats_contract import Producer, ensure_runs_stream, publish_event
from gateway.live_hub import LiveHub, Watcher, _RunChannel
from schemas import Token

RUNS = 200
CLIENTS_PER_RUN = 5  # 1,000 clients in all
REPLICA_NAME = "churned-replica"


class NatsWithMonitoring:
    """A NATS server whose monitoring endpoint shows what each connection subscribes to."""

    def __init__(self, url: str, monitor_url: str) -> None:
        self.url = url
        self.monitor_url = monitor_url

    async def subjects_of(self, connection_name: str) -> list[str]:
        """Every subject the named client connection holds a subscription on, per the server."""
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.get(f"{self.monitor_url}/connz", params={"subs": "detail"})
        reply.raise_for_status()
        (conn,) = [c for c in reply.json()["connections"] if c.get("name") == connection_name]
        return [sub["subject"] for sub in conn.get("subscriptions_list_detail", [])]


@pytest.fixture(scope="module")
async def nats_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[NatsWithMonitoring]:
    port, monitor_port = free_port(), free_port()
    store = Path(tmp_path_factory.mktemp("nats"))
    argv = [binary_path("nats-server"), "-a", "127.0.0.1", "-p", str(port)]
    argv += ["-m", str(monitor_port), "-js", "-sd", str(store)]
    server = ServiceProcess("nats", argv, {}, store)
    await server.start()
    try:
        await server.wait_for_line("Server is ready", 30)
        yield NatsWithMonitoring(f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor_port}")
    finally:
        await server.stop()


class HeldHub(LiveHub):
    """A hub whose subscription set-up stays open until the test lets it finish.

    The subscription is made (the server will hold the interest) and then held, which is the
    window a leaving client must not turn into a leak.
    """

    def __init__(self, nc: NATS, *, runs: int) -> None:
        super().__init__(nc, client_queue_size=16)
        self.release = asyncio.Event()
        self.all_held = asyncio.Event()
        self.held: set[str] = set()
        self._runs = runs

    async def _subscribe(self, subject: str, channel: _RunChannel) -> Subscription:
        subscription = await super()._subscribe(subject, channel)
        self.held.add(subject)
        if len(self.held) == self._runs:
            self.all_held.set()
        await self.release.wait()
        return subscription


@pytest.fixture
async def replica(nats_server: NatsWithMonitoring) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url, name=REPLICA_NAME)
    try:
        yield nc
    finally:
        await nc.close()


async def test_a_thousand_clients_leaving_during_subscription_setup_leave_no_subscription(
    nats_server: NatsWithMonitoring, replica: NATS
) -> None:
    producer = await nats.connect(nats_server.url)
    await ensure_runs_stream(producer.jetstream(), max_age_s=3600, replicas=1)
    hub = HeldHub(replica, runs=RUNS)
    runs = [f"run_churn_{i}" for i in range(RUNS)]
    # Runs whose first client leaves while the others wait, and the others stay to read.
    staying = set(runs[2::4])
    received: dict[str, list[Watcher]] = {run: [] for run in staying}

    async def client(run: str) -> None:
        async with hub.watch("default", run) as watcher:
            if run not in staying:
                raise AssertionError("a client that left during set-up got through it")
            await watcher.get()
            received[run].append(watcher)

    try:
        tasks = {run: [asyncio.create_task(client(run))] for run in runs}
        async with asyncio.timeout(30):
            await hub.all_held.wait()
        for run in runs:
            tasks[run] += [asyncio.create_task(client(run)) for _ in range(CLIENTS_PER_RUN - 1)]
        # One turn of the loop: each new client joins its run's channel and waits on set-up.
        await asyncio.sleep(0)
        for run in runs:
            channel = hub._channels[f"live.default.{run}"]
            assert len(channel.watchers) == CLIENTS_PER_RUN, "every client is inside set-up"
        assert hub.held == {f"live.default.{run}" for run in runs}, "every set-up is held open"
        await replica.flush(timeout=10)
        made = [s for s in await nats_server.subjects_of(REPLICA_NAME) if "run_churn" in s]
        assert len(made) == RUNS, "the server holds the subscriptions being set up"

        # Leave at every point of set-up: the first client alone, the waiting ones, all of them
        # in either order.
        leaving: list[asyncio.Task[None]] = []
        for i, run in enumerate(runs):
            first, *others = tasks[run]
            match i % 4:
                case 0:
                    leaving += [first, *others]
                case 1:
                    leaving += [*others, first]
                case 2:
                    leaving += [first]
                case _:
                    leaving += [*others[:2], first, *others[2:]]
        for task in leaving:
            task.cancel()
        for task in leaving:
            with contextlib.suppress(asyncio.CancelledError):
                await task

        hub.release.set()
        async with asyncio.timeout(30):
            # The clients that stayed got a working subscription despite their first leaving.
            for run in staying:
                await publish_event(
                    producer, "default", Token(run=run, n=0, text="x"), producer=Producer.AGENT
                )
            await asyncio.gather(*(t for run in staying for t in tasks[run][1:]))
            await hub.settled()
        assert all(len(received[run]) == CLIENTS_PER_RUN - 1 for run in staying)

        await replica.flush(timeout=10)  # the server has read every UNSUB the replica sent
        left_behind = [s for s in await nats_server.subjects_of(REPLICA_NAME) if "run_churn" in s]
        assert left_behind == [], f"{len(left_behind)} live subscriptions leaked"
        assert hub.watched_runs == 0
    finally:
        hub.release.set()
        await producer.close()
