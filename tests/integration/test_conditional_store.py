"""The bridge's store and the terminal publisher against a real NATS server.

A post is stored all or none, in order, once however often it is retried, and never after the
run ended or a newer attempt took over, even when that happens between the check and the store.
The terminal event's proof covers exactly the events stored before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

import gateway.run_appender
from agentstream.runtime.http import Conflict
from agentstream.runtime.nats_contract import (
    LastSequenceMoved,
    Producer,
    Stored,
    StoredEvent,
    ensure_runs_stream,
    publish,
    publish_event,
    run_subject,
)
from agentstream.runtime.run_history import HistoryReader, LastEvent
from agentstream.runtime.terminal_publisher import publish_terminal
from gateway.run_appender import AgentEvent, RunAppender
from schemas import (
    AgentResult,
    Completeness,
    Done,
    Failed,
    Reset,
    Stage,
    Status,
    TerminalEvent,
    Token,
    decode_event,
    encode,
    event_id,
    message_seq,
)
from tests.proof import expected_proof

ORG = "default"


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    await ensure_runs_stream(conn.jetstream(), max_age_s=3600, replicas=1)
    try:
        yield conn
    finally:
        await conn.close()


_runs = iter(range(1_000_000))


def new_run() -> str:
    return f"run_store_{next(_runs)}"


def posted(run: str, first: int, count: int, attempt: int = 1) -> list[AgentEvent]:
    """``count`` agent tokens of ``run`` numbered from ``first``, as the bridge hands them on."""
    return [
        AgentEvent(n, "token", encode(Token(run=run, attempt=attempt, n=n, text=f"t{n}")))
        for n in range(first, first + count)
    ]


async def stored(nc: NATS, run: str) -> list[StoredEvent]:
    return [e async for e in HistoryReader(nc).read(ORG, run, after=0)]


def numbers(events: list[StoredEvent]) -> list[int]:
    return [decode_event(e.data).n for e in events]


def data_of(post: list[AgentEvent]) -> list[bytes]:
    return [e.data for e in post]


async def test_a_post_is_one_message_its_events_in_order_with_consecutive_ids(nc: NATS) -> None:
    run = new_run()
    post = posted(run, 0, 50)
    result = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    events = await stored(nc, run)
    assert [e.data for e in events] == data_of(post)
    assert len({e.seq for e in events}) == 1, "one message"
    assert result.ids == [e.id for e in events] == [event_id(events[0].seq, i) for i in range(50)]
    assert not result.duplicate


async def test_the_same_post_retried_through_any_replica_is_stored_once(nc: NATS) -> None:
    run = new_run()
    post = posted(run, 0, 10)
    first = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    for replica in (RunAppender(nc, HistoryReader(nc)), RunAppender(nc, HistoryReader(nc))):
        again = await replica.append(ORG, run, 1, post)
        assert again.duplicate and again.ids == []
    events = await stored(nc, run)
    assert [e.id for e in events] == first.ids and [e.data for e in events] == data_of(post)


async def test_a_post_whose_answer_was_lost_is_stored_once_when_retried(
    nats_url: str, nc: NATS
) -> None:
    run = new_run()
    post = posted(run, 0, 20)
    # The message reaches the server, then the bridge's connection dies before the answer: a
    # bridge replica killed mid-post. The agent retries the same body through another.
    doomed = await nats.connect(nats_url)
    message = gateway.run_appender._message(run, 1, post)
    await doomed.publish(run_subject(ORG, run), message.data, headers=message.headers)
    await doomed.flush()
    await doomed.close()
    retried = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    assert retried.duplicate
    events = await stored(nc, run)
    # Even on a current view: JetStream de-duplicates it by its Nats-Msg-Id.
    again = await publish(nc, ORG, run, message, expected_last=events[-1].seq)
    assert again == Stored(events[-1].seq, duplicate=True)
    assert [e.data for e in events] == data_of(post)


async def test_a_post_on_a_stale_view_is_refused(nc: NATS) -> None:
    run = new_run()
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 0, 3))
    for post in (posted(run, 3, 1), posted(run, 3, 4)):
        with pytest.raises(LastSequenceMoved):
            await publish(
                nc, ORG, run, gateway.run_appender._message(run, 1, post), expected_last=0
            )
    assert len(await stored(nc, run)) == 3


async def test_a_post_too_large_for_one_message_is_stored_as_several_in_order(nc: NATS) -> None:
    run = new_run()
    post = posted(run, 0, 60)
    small = RunAppender(nc, HistoryReader(nc), max_message_bytes=2_048)
    result = await small.append(ORG, run, 1, post)
    events = await stored(nc, run)
    assert [e.data for e in events] == data_of(post)
    assert result.ids == [e.id for e in events] == sorted(set(result.ids))
    assert len({e.seq for e in events}) > 2, "several messages"
    assert (await small.append(ORG, run, 1, post)).duplicate


async def test_a_post_cut_off_between_its_messages_is_completed_once_by_the_retry(
    nats_url: str, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = new_run()
    post = posted(run, 0, 60)
    doomed = await nats.connect(nats_url)
    stores = 0

    async def dies_after_the_first_store(*args: object, **kwargs: object) -> Stored:
        # The replica dies once the first of the post's messages is stored.
        nonlocal stores
        stores += 1
        if stores > 1:
            await doomed.close()
        return await publish(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gateway.run_appender, "publish", dies_after_the_first_store)
    with pytest.raises(nats.errors.ConnectionClosedError):
        await RunAppender(doomed, HistoryReader(doomed), max_message_bytes=2_048).append(
            ORG, run, 1, post
        )
    monkeypatch.undo()
    part = await stored(nc, run)
    assert 0 < len(part) < 60, "a prefix was stored"
    # The agent retries the whole post through another replica, which fits it in one message.
    result = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    events = await stored(nc, run)
    assert numbers(events) == list(range(60)), "every event once, in order"
    assert result.ids == [e.id for e in events[len(part) :]]
    assert [e.id for e in events] == sorted(set(e.id for e in events))


async def test_a_message_of_several_events_resumes_in_its_middle(nc: NATS) -> None:
    run = new_run()
    post = posted(run, 0, 10)
    result = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    after = result.ids[3]
    rest = [e async for e in HistoryReader(nc).read(ORG, run, after=after)]
    assert [e.id for e in rest] == result.ids[4:]
    assert message_seq(after) == rest[0].seq


class EndsRunAfterLooking(HistoryReader):
    """A history reader after whose look the run's terminal event lands: the race to close."""

    def __init__(self, nc: NATS, ending: Done | Reset) -> None:
        super().__init__(nc)
        self._ending: Done | Reset | None = ending

    async def last_event(self, org: str, run: str) -> LastEvent | None:
        seen = await super().last_event(org, run)
        if self._ending is not None:
            ending, self._ending = self._ending, None
            await publish_event(self._nc, org, ending, producer=Producer.TERMINAL)
        return seen


async def test_a_run_ending_between_check_and_store_refuses_the_post_and_every_later_one(
    nc: NATS,
) -> None:
    run = new_run()
    done = Done(run=run, result=AgentResult(final_answer="ok"))
    appender = RunAppender(nc, EndsRunAfterLooking(nc, done))
    await publish_event(nc, ORG, Token(run=run, n=0, text="a"), producer=Producer.AGENT)
    for first in (1, 2):
        with pytest.raises(Conflict, match="finished"):
            await appender.append(ORG, run, 1, posted(run, first, 3))
    assert [e.type for e in await stored(nc, run)] == ["token", "done"]


async def test_a_newer_attempt_starting_between_check_and_store_refuses_the_old_one(
    nc: NATS,
) -> None:
    run = new_run()
    appender = RunAppender(nc, EndsRunAfterLooking(nc, Reset(run=run, attempt=2)))
    with pytest.raises(Conflict, match="superseded"):
        await appender.append(ORG, run, 1, posted(run, 0, 2))
    assert [e.type for e in await stored(nc, run)] == ["reset"]


async def test_consecutive_posts_skip_the_look_and_still_see_the_run_end(
    nc: NATS,
) -> None:
    run = new_run()
    history = HistoryReader(nc)
    looks = 0

    class Counting(HistoryReader):
        async def last_event(self, org: str, run: str) -> LastEvent | None:
            nonlocal looks
            looks += 1
            return await history.last_event(org, run)

    appender = RunAppender(nc, Counting(nc))
    for first in range(0, 30, 3):
        result = await appender.append(ORG, run, 1, posted(run, first, 3))
        assert len(result.ids) == 3
    assert looks == 1, "one look for the attempt's first post, none after"
    retried = await appender.append(ORG, run, 1, posted(run, 27, 3))
    assert retried.duplicate, "a retry of a stored post is answered as stored, not refused"
    await publish_event(nc, ORG, Failed(run=run, reason="x"), producer=Producer.TERMINAL)
    with pytest.raises(Conflict):
        await appender.append(ORG, run, 1, posted(run, 30, 1))
    assert len(await stored(nc, run)) == 31


async def test_a_retry_of_a_partly_stored_post_stores_only_the_rest_in_order(nc: NATS) -> None:
    run = new_run()
    post = posted(run, 0, 10)
    # An earlier try stored the first four events (a post split across messages, cut off), and
    # the agent retries the whole post, here through another replica.
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post[:4])
    result = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    assert len(result.ids) == 6 and not result.duplicate
    assert [e.data for e in await stored(nc, run)] == data_of(post)
    again = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, post)
    assert again.duplicate and again.ids == []
    assert len(await stored(nc, run)) == 10


async def test_events_stored_before_another_producers_are_skipped_not_stored_twice(
    nc: NATS,
) -> None:
    run = new_run()
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 0, 3))
    status = Status(run=run, attempt=1, stage=Stage.AGENT_STARTED)
    await publish_event(nc, ORG, status, producer=Producer.CALL_AGENT)
    # Events 1 and 2 again, after another producer's event, through a replica that never saw
    # them: the messages' Nats-Msg-Id name what the attempt stored.
    result = await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 1, 4))
    assert len(result.ids) == 2
    assert [e.type for e in await stored(nc, run)] == ["token"] * 3 + ["status"] + ["token"] * 2
    assert numbers(await stored(nc, run)) == [0, 1, 2, 0, 3, 4]


def proof_of(terminal: StoredEvent) -> Completeness | None:
    event = decode_event(terminal.data)
    assert isinstance(event, TerminalEvent)
    return event.completeness


async def test_the_terminal_proof_covers_every_event_stored_before_it(nc: NATS) -> None:
    run = new_run()
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 0, 300))
    history = HistoryReader(nc)
    terminal_id = await publish_terminal(
        nc, history, ORG, Done(run=run, result=AgentResult(final_answer="ok"))
    )
    events = await stored(nc, run)
    assert terminal_id == events[-1].id and events[-1].type == "done"
    proof = proof_of(events[-1])
    assert proof is not None
    assert (proof.events, proof.sha256) == expected_proof((e.id, e.data) for e in events[:-1])


class StoresAfterReading(HistoryReader):
    """A history reader after whose reading one more event lands: a late chunk racing the end."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc)
        self.late_landed = False

    async def read(self, org: str, run: str, *, after: int) -> AsyncGenerator[StoredEvent, None]:
        async for event in super().read(org, run, after=after):
            yield event
        if not self.late_landed:
            self.late_landed = True
            late = Token(run=run, n=99, text="late")
            await publish_event(self._nc, org, late, producer=Producer.AGENT)


async def test_an_event_landing_while_the_end_is_proved_is_covered_not_lost(nc: NATS) -> None:
    run = new_run()
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 0, 5))
    history = StoresAfterReading(nc)
    await publish_terminal(nc, history, ORG, Failed(run=run, reason="x"))
    events = await stored(nc, run)
    assert history.late_landed
    assert [e.type for e in events] == ["token"] * 6 + ["failed"]
    proof = proof_of(events[-1])
    assert proof is not None
    assert (proof.events, proof.sha256) == expected_proof((e.id, e.data) for e in events[:-1])


async def test_two_publishers_of_the_end_store_one_terminal_event(nc: NATS) -> None:
    run = new_run()
    await RunAppender(nc, HistoryReader(nc)).append(ORG, run, 1, posted(run, 0, 5))
    history = HistoryReader(nc)
    results = await asyncio.gather(
        publish_terminal(nc, history, ORG, Failed(run=run, reason="from the worker")),
        publish_terminal(nc, history, ORG, Failed(run=run, reason="from a gateway")),
    )
    assert sorted(results, key=lambda r: r is None)[1] is None, "exactly one stored"
    assert [e.type for e in await stored(nc, run)] == ["token"] * 5 + ["failed"]
