"""The live hub delivers every watched run's messages from one task, on a real NATS server.

Each run keeps its own NATS subscription (the server holds one interest per run), but no queue or
task of its own: a replica watching thousands of runs would otherwise spend more on those than
on its clients.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NATS

from agentstream.runtime.nats_contract import Producer, publish_event
from gateway.live_hub import LiveHub, Watcher
from gateway.sse_frames import Frame
from schemas import Token

RUNS = 100


async def test_a_hundred_watched_runs_get_their_own_events_from_one_task(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=16)
    runs = [f"run_shared_{i}" for i in range(RUNS)]
    tasks_before = len(asyncio.all_tasks())
    async with contextlib.AsyncExitStack() as watching:
        watchers: dict[str, Watcher] = {}
        for run in runs:
            watchers[run] = await watching.enter_async_context(hub.watch("default", run))
        await hub.settled()
        assert hub.watched_runs == RUNS
        assert len(asyncio.all_tasks()) <= tasks_before + 1, "one delivery task, not one a run"

        for n, run in enumerate(runs):
            await publish_event(
                producer, "default", Token(run=run, n=n, text=run), producer=Producer.AGENT
            )
        async with asyncio.timeout(10):
            for run, watcher in watchers.items():
                item = await watcher.get()
                assert isinstance(item, Frame)
                assert f'"run":"{run}"'.encode() in item.wire, "each run's event to its own client"
    await hub.settled()
    assert hub.watched_runs == 0
    # The delivery task stops with the last subscription.
    assert len(asyncio.all_tasks()) <= tasks_before
