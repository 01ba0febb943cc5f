"""History and live merged against a real NATS server: no gap, no duplicate, whatever the race."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NATS

from agentstream.runtime.nats_contract import (
    Producer,
    StoredEvent,
    publish_event,
)
from agentstream.runtime.run_history import HistoryReader
from gateway.live_hub import LiveHub
from gateway.run_stream import stream_run
from gateway.sse_frames import Frame, frame_of
from schemas import AgentResult, Done, Token, event_id

IDLE_CHECK_S = 0.2


async def _publish_run(producer: NATS, run: str, tokens: int) -> None:
    for n in range(tokens):
        await publish_event(
            producer, "default", Token(run=run, n=n, text=f"t{n}"), producer=Producer.AGENT
        )
    done = Done(run=run, result=AgentResult(final_answer="ok"))
    await publish_event(producer, "default", done, producer=Producer.TERMINAL)


async def _collect(hub: LiveHub, history: HistoryReader, run: str) -> list[Frame]:
    events = stream_run(hub, history, "default", run, after=0, idle_check_s=IDLE_CHECK_S)
    async with asyncio.timeout(20):
        return [frame async for batch in events for frame in batch]


def _type(frame: Frame) -> str:
    return frame.wire.split(b"\n")[1].removeprefix(b"event: ").decode()


def _assert_whole_run(events: list[Frame], tokens: int) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "in order, none doubled"
    assert [_type(e) for e in events] == ["token"] * tokens + ["done"], "none missing"
    assert [e.terminal for e in events] == [False] * tokens + [True]


async def test_events_published_while_the_subscription_is_being_made_are_never_lost(
    connections: tuple[NATS, NATS],
) -> None:
    # nats-py's subscribe + flush does not promise the server has the interest before another
    # connection publishes; the merge must not care. Race it many times.
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=256)
    history = HistoryReader(gateway)
    for i in range(30):
        run = f"run_race_{i}"
        reading = asyncio.create_task(_collect(hub, history, run))
        await _publish_run(producer, run, tokens=5)
        _assert_whole_run(await reading, tokens=5)
    assert hub.watched_runs == 0, "every subscription was released"


async def test_a_live_tail_that_never_arrives_is_read_from_the_stream(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=256)
    history = HistoryReader(gateway)
    run = "run_lost_tail"
    await publish_event(
        producer, "default", Token(run=run, n=0, text="first"), producer=Producer.AGENT
    )
    events = stream_run(hub, history, "default", run, after=0, idle_check_s=IDLE_CHECK_S)
    async with asyncio.timeout(20):
        (first,) = await anext(events)
        assert _type(first) == "token"
        # Lose live delivery altogether: only the idle re-read can find the rest.
        channel = hub._channels[f"live.default.{run}"]
        assert channel.subscription is not None
        await channel.subscription.unsubscribe()
        await _publish_run(producer, run, tokens=0)
        rest = [frame async for batch in events for frame in batch]
    assert [_type(e) for e in rest] == ["done"]


async def test_a_hole_in_live_delivery_is_refilled_before_anything_after_it(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=256)
    history = HistoryReader(gateway)
    run = "run_hole"
    await publish_event(producer, "default", Token(run=run, n=0, text="a"), producer=Producer.AGENT)
    # Idle checks effectively off: only the hole in the sequence can trigger the refill.
    events = stream_run(hub, history, "default", run, after=0, idle_check_s=60)
    async with asyncio.timeout(20):
        (first,) = await anext(events)
        channel = hub._channels[f"live.default.{run}"]
        assert channel.subscription is not None
        await channel.subscription.unsubscribe()
        seq_b = await publish_event(
            producer, "default", Token(run=run, n=1, text="b"), producer=Producer.AGENT
        )
        seq_c = await publish_event(
            producer, "default", Token(run=run, n=2, text="c"), producer=Producer.AGENT
        )
        # Only "c" arrives live, naming "b" as its predecessor: "b" was lost.
        (watcher,) = channel.watchers
        late = StoredEvent(seq=seq_c, position=0, prev_seq=seq_b, type="token", data=b"{}")
        watcher.offer(frame_of(late))
        second, third = await anext(events)
    assert [first.seq, second.seq, third.seq] == [first.seq, seq_b, seq_c]
    assert [second.id, third.id] == [event_id(seq_b), event_id(seq_c)]
    assert b'"text":"b"' in second.wire and b'"text":"c"' in third.wire, "read from the stream"
    await events.aclose()
    assert hub.watched_runs == 0


async def test_clients_leaving_while_their_subscription_is_made_do_not_break_the_connection(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=16)
    history = HistoryReader(gateway)

    async def watch_briefly(run: str) -> None:
        async with hub.watch("default", run):
            await asyncio.Event().wait()

    # Cancel watchers at every point of their set-up, the subscription's flush included.
    for i in range(40):
        task = asyncio.create_task(watch_briefly(f"run_leaving_{i}"))
        for _ in range(i % 4):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await gateway.flush(timeout=5)

    run = "run_after_leavers"
    await _publish_run(producer, run, tokens=2)
    _assert_whole_run(await _collect(hub, history, run), tokens=2)


async def test_live_events_pending_together_reach_the_client_as_one_batch_encoded_once(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    hub = LiveHub(gateway, client_queue_size=256)
    history = HistoryReader(gateway)
    run = "run_batched"
    await publish_event(
        producer, "default", Token(run=run, n=0, text="first"), producer=Producer.AGENT
    )
    clients = [stream_run(hub, history, "default", run, after=0, idle_check_s=60) for _ in range(3)]
    async with asyncio.timeout(20):
        for client in clients:
            assert len(await anext(client)) == 1, "the history"
        (watcher, *_) = hub._channels[f"live.default.{run}"].watchers
        # Published while no client reads: every client's next read takes all five at once.
        for n in range(1, 6):
            await publish_event(
                producer, "default", Token(run=run, n=n, text=f"t{n}"), producer=Producer.AGENT
            )
        while len(watcher._items) < 5:
            await gateway.flush()
        batches = [await anext(client) for client in clients]
    assert [len(batch) for batch in batches] == [5, 5, 5], "one batch, so one write"
    for frames in zip(*batches, strict=True):
        assert all(frame.wire is frames[0].wire for frame in frames), "encoded once for all"
    assert frames[0].wire.startswith(b"id: %d\nevent: token\ndata: {" % frames[0].id)
    for client in clients:
        await client.aclose()
    assert hub.watched_runs == 0
