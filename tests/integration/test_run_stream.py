"""History and live merged against a real NATS server: no gap, no duplicate, whatever the race."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS

from agentstream.runtime.nats_contract import Producer, StoredEvent, live_subject, publish_event
from agentstream.runtime.run_history import HistoryReader
from gateway.live_hub import LiveHub, _RunChannel
from gateway.run_stream import stream_run
from gateway.sse_frames import Frame, frame_of
from schemas import AgentResult, Done, Token, event_id

IDLE_CHECK_S = 0.2


@dataclass
class Rig:
    """A gateway's hub and history reader, and a producer publishing runs of org ``default``."""

    gateway: NATS
    producer: NATS
    hub: LiveHub
    history: HistoryReader

    async def token(self, run: str, n: int, text: str | None = None) -> int:
        """Store token ``n`` of ``run``; its sequence."""
        token = Token(run=run, n=n, text=f"t{n}" if text is None else text)
        return await publish_event(self.producer, "default", token, producer=Producer.AGENT)

    async def publish_run(self, run: str, tokens: int) -> None:
        """Store ``tokens`` tokens of ``run``, then its ``done``."""
        for n in range(tokens):
            await self.token(run, n)
        done = Done(run=run, result=AgentResult(final_answer="ok"))
        await publish_event(self.producer, "default", done, producer=Producer.TERMINAL)

    def stream(self, run: str, *, idle_check_s: float = IDLE_CHECK_S) -> AsyncIterator[list[Frame]]:
        """A client's stream of ``run`` from its start."""
        return stream_run(
            self.hub, self.history, "default", run, after=0, idle_check_s=idle_check_s
        )

    async def collect(self, run: str) -> list[Frame]:
        """Every frame of ``run`` a client reads to its end."""
        async with asyncio.timeout(20):
            return [frame async for batch in self.stream(run) for frame in batch]

    def channel(self, run: str) -> _RunChannel:
        """The hub's live channel of ``run``."""
        return self.hub._channels[live_subject("default", run)]

    async def lose_live_delivery(self, run: str) -> _RunChannel:
        """Unsubscribe ``run``'s live channel behind the hub's back."""
        channel = self.channel(run)
        assert channel.subscription is not None
        await channel.subscription.unsubscribe()
        return channel


@pytest.fixture
def rig(connections: tuple[NATS, NATS], request: pytest.FixtureRequest) -> Rig:
    gateway, producer = connections
    queue = getattr(request, "param", 256)
    hub = LiveHub(gateway, client_queue_size=queue)
    return Rig(gateway, producer, hub, HistoryReader(gateway))


def _type(frame: Frame) -> str:
    return frame.wire.split(b"\n")[1].removeprefix(b"event: ").decode()


def _assert_whole_run(events: list[Frame], tokens: int) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "in order, none doubled"
    assert [_type(e) for e in events] == ["token"] * tokens + ["done"], "none missing"
    assert [e.terminal for e in events] == [False] * tokens + [True]


async def test_events_published_while_the_subscription_is_being_made_are_never_lost(
    rig: Rig,
) -> None:
    # nats-py's subscribe + flush does not promise the server has the interest before another
    # connection publishes; the merge must not care. Race it many times.
    for i in range(30):
        run = f"run_race_{i}"
        reading = asyncio.create_task(rig.collect(run))
        await rig.publish_run(run, tokens=5)
        _assert_whole_run(await reading, tokens=5)
    assert rig.hub.watched_runs == 0, "every subscription was released"


async def test_a_live_tail_that_never_arrives_is_read_from_the_stream(rig: Rig) -> None:
    run = "run_lost_tail"
    await rig.token(run, 0)
    events = rig.stream(run)
    async with asyncio.timeout(20):
        (first,) = await anext(events)
        assert _type(first) == "token"
        # Lose live delivery altogether: only the idle re-read can find the rest.
        await rig.lose_live_delivery(run)
        await rig.publish_run(run, tokens=0)
        rest = [frame async for batch in events for frame in batch]
    assert [_type(e) for e in rest] == ["done"]


async def test_a_hole_in_live_delivery_is_refilled_before_anything_after_it(rig: Rig) -> None:
    run = "run_hole"
    await rig.token(run, 0, "a")
    # Idle checks effectively off: only the hole in the sequence can trigger the refill.
    events = rig.stream(run, idle_check_s=60)
    async with asyncio.timeout(20):
        (first,) = await anext(events)
        channel = await rig.lose_live_delivery(run)
        seq_b = await rig.token(run, 1, "b")
        seq_c = await rig.token(run, 2, "c")
        # Only "c" arrives live, naming "b" as its predecessor: "b" was lost.
        (watcher,) = channel.watchers
        late = StoredEvent(seq=seq_c, position=0, prev_seq=seq_b, type="token", data=b"{}")
        watcher.offer(frame_of(late))
        second, third = await anext(events)
    assert [first.seq, second.seq, third.seq] == [first.seq, seq_b, seq_c]
    assert [second.id, third.id] == [event_id(seq_b), event_id(seq_c)]
    assert b'"text":"b"' in second.wire and b'"text":"c"' in third.wire, "read from the stream"
    await events.aclose()
    assert rig.hub.watched_runs == 0


@pytest.mark.parametrize("rig", [16], indirect=True)
async def test_clients_leaving_while_their_subscription_is_made_do_not_break_the_connection(
    rig: Rig,
) -> None:
    async def watch_briefly(run: str) -> None:
        async with rig.hub.watch("default", run):
            await asyncio.Event().wait()

    # Cancel watchers at every point of their set-up, the subscription's flush included.
    for i in range(40):
        task = asyncio.create_task(watch_briefly(f"run_leaving_{i}"))
        for _ in range(i % 4):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await rig.gateway.flush(timeout=5)

    run = "run_after_leavers"
    await rig.publish_run(run, tokens=2)
    _assert_whole_run(await rig.collect(run), tokens=2)


async def test_live_events_pending_together_reach_the_client_as_one_batch_encoded_once(
    rig: Rig,
) -> None:
    run = "run_batched"
    await rig.token(run, 0)
    clients = [rig.stream(run, idle_check_s=60) for _ in range(3)]
    async with asyncio.timeout(20):
        for client in clients:
            assert len(await anext(client)) == 1, "the history"
        (watcher, *_) = rig.channel(run).watchers
        # Published while no client reads: every client's next read takes all five at once.
        for n in range(1, 6):
            await rig.token(run, n)
        while len(watcher._items) < 5:
            await rig.gateway.flush()
        batches = [await anext(client) for client in clients]
    assert [len(batch) for batch in batches] == [5, 5, 5], "one batch, so one write"
    for frames in zip(*batches, strict=True):
        assert all(frame.wire is frames[0].wire for frame in frames), "encoded once for all"
    assert frames[0].wire.startswith(b"id: %d\nevent: token\ndata: {" % frames[0].id)
    for client in clients:
        await client.aclose()
    assert rig.hub.watched_runs == 0
