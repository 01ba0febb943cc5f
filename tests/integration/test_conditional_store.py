"""The bridge's store and the terminal publisher against a real NATS server.

A post is stored all or none, in order, once however often it is retried, and never after the
run ended or a newer attempt took over, even when that happens between the check and the store.
The terminal event's proof covers exactly the events stored before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from agentstream.conditional_append import (
    AlreadyStored,
    LastSequenceMoved,
    OutgoingEvent,
    append,
)
from agentstream.event_publisher import event_headers, publish_event
from agentstream.http import Conflict
from agentstream.nats_conn import ensure_runs_stream
from agentstream.run_history import HistoryReader, LastEvent
from agentstream.stored_event import StoredEvent
from agentstream.terminal_publisher import publish_terminal
from gateway.run_appender import AgentEvent, RunAppender
from schemas import (
    AgentResult,
    Completeness,
    Done,
    Failed,
    Reset,
    TerminalEvent,
    Token,
    decode_event,
    encode,
    run_subject,
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


def tokens(run: str, first: int, count: int, attempt: int = 1) -> list[OutgoingEvent]:
    """``count`` agent tokens of ``run`` numbered from ``first``, encoded as the bridge does."""
    events = [
        Token(run=run, attempt=attempt, n=n, text=f"t{n}") for n in range(first, first + count)
    ]
    return [OutgoingEvent(encode(e), event_headers(e, "agent")) for e in events]


def posted(run: str, first: int, count: int, attempt: int = 1) -> list[AgentEvent]:
    """The same tokens as the bridge hands them to its appender."""
    return [AgentEvent(first + i, e) for i, e in enumerate(tokens(run, first, count, attempt))]


@pytest.fixture(params=[True, False], ids=["atomic", "chained"])
def atomic(request: pytest.FixtureRequest) -> bool:
    """Both ways the bridge stores a post."""
    return bool(request.param)


async def stored(nc: NATS, run: str) -> list[StoredEvent]:
    return [e async for e in HistoryReader(nc).read(ORG, run, after=0)]


def texts(events: list[StoredEvent]) -> list[str]:
    return [e.data.decode() for e in events]


async def test_a_post_is_stored_in_order_contiguously_with_one_answer(nc: NATS) -> None:
    run = new_run()
    post = tokens(run, 0, 50)
    last = await append(nc, run_subject(ORG, run), post, expected_last=0)
    events = await stored(nc, run)
    assert texts(events) == [p.data.decode() for p in post]
    assert [e.seq for e in events] == list(range(last - 49, last + 1))


async def test_a_retried_post_is_stored_once(nc: NATS) -> None:
    run = new_run()
    subject = run_subject(ORG, run)
    post = tokens(run, 0, 10)
    await append(nc, subject, post, expected_last=0)
    first = await stored(nc, run)
    with pytest.raises(AlreadyStored):
        # The same body again, as an agent that lost the answer sends it, even on a current view.
        await append(nc, subject, post, expected_last=first[-1].seq)
    with pytest.raises(AlreadyStored):
        await append(nc, subject, post[:1], expected_last=first[-1].seq)
    assert await stored(nc, run) == first


async def test_a_post_cut_off_in_the_middle_stores_nothing_and_its_retry_stores_all_once(
    nats_url: str, nc: NATS
) -> None:
    run = new_run()
    subject = run_subject(ORG, run)
    post = tokens(run, 0, 20)
    # The first half of a batch reaches the server, then the bridge's connection dies before
    # the commit: a bridge replica killed mid-post.
    doomed = await nats.connect(nats_url)
    for index, event in enumerate(post[:10], start=1):
        headers = {
            **event.headers,
            "Nats-Batch-Id": "cut-" + run,
            "Nats-Batch-Sequence": str(index),
        }
        if index == 1:
            headers["Nats-Expected-Last-Subject-Sequence"] = "0"
        await doomed.publish(subject, event.data, headers=headers)
    await doomed.flush()
    await doomed.close()
    assert await stored(nc, run) == [], "an uncommitted batch stores nothing"
    await append(nc, subject, post, expected_last=0)
    with pytest.raises(AlreadyStored):
        await append(nc, subject, post, expected_last=0)
    assert texts(await stored(nc, run)) == [p.data.decode() for p in post]


async def test_a_refused_event_in_the_middle_refuses_the_whole_post(nc: NATS) -> None:
    run = new_run()
    post = tokens(run, 0, 5)
    # A header an atomic batch may not carry, on the third event: the server refuses the batch.
    bad = post[2]._replace(headers={**post[2].headers, "Nats-Expected-Last-Msg-Id": "x"})
    with pytest.raises(Exception, match="unsupported header"):
        await append(nc, run_subject(ORG, run), [*post[:2], bad, *post[3:]], expected_last=0)
    assert await stored(nc, run) == []
    await append(nc, run_subject(ORG, run), post, expected_last=0)
    assert len(await stored(nc, run)) == 5


async def test_a_post_on_a_stale_view_is_refused(nc: NATS) -> None:
    run = new_run()
    subject = run_subject(ORG, run)
    await append(nc, subject, tokens(run, 0, 3), expected_last=0)
    for post in (tokens(run, 3, 1), tokens(run, 3, 4)):
        with pytest.raises(LastSequenceMoved):
            await append(nc, subject, post, expected_last=0)
    assert len(await stored(nc, run)) == 3


class EndsRunAfterLooking(HistoryReader):
    """A history reader after whose look the run's terminal event lands: the race to close."""

    def __init__(self, nc: NATS, ending: Done | Reset) -> None:
        super().__init__(nc)
        self._ending: Done | Reset | None = ending

    async def last_event(self, org: str, run: str) -> LastEvent | None:
        seen = await super().last_event(org, run)
        if self._ending is not None:
            ending, self._ending = self._ending, None
            await publish_event(self._nc.jetstream(), org, ending, producer="terminal")
        return seen


async def test_a_run_ending_between_check_and_store_refuses_the_post_and_every_later_one(
    nc: NATS, atomic: bool
) -> None:
    run = new_run()
    done = Done(run=run, result=AgentResult(final_answer="ok"))
    appender = RunAppender(nc, EndsRunAfterLooking(nc, done), atomic=atomic)
    await publish_event(nc.jetstream(), ORG, Token(run=run, n=0, text="a"), producer="agent")
    for first in (1, 2):
        with pytest.raises(Conflict, match="finished"):
            await appender.append(ORG, run, 1, posted(run, first, 3))
    assert [e.type for e in await stored(nc, run)] == ["token", "done"]


async def test_a_newer_attempt_starting_between_check_and_store_refuses_the_old_one(
    nc: NATS, atomic: bool
) -> None:
    run = new_run()
    appender = RunAppender(nc, EndsRunAfterLooking(nc, Reset(run=run, attempt=2)), atomic=atomic)
    with pytest.raises(Conflict, match="superseded"):
        await appender.append(ORG, run, 1, posted(run, 0, 2))
    assert [e.type for e in await stored(nc, run)] == ["reset"]


async def test_consecutive_posts_skip_the_look_and_still_see_the_run_end(
    nc: NATS, atomic: bool
) -> None:
    run = new_run()
    history = HistoryReader(nc)
    looks = 0

    class Counting(HistoryReader):
        async def last_event(self, org: str, run: str) -> LastEvent | None:
            nonlocal looks
            looks += 1
            return await history.last_event(org, run)

    appender = RunAppender(nc, Counting(nc), atomic=atomic)
    for first in range(0, 30, 3):
        result = await appender.append(ORG, run, 1, posted(run, first, 3))
        assert len(result.seqs) == 3
    assert looks == 1, "one look for the attempt's first post, none after"
    retried = await appender.append(ORG, run, 1, posted(run, 27, 3))
    assert retried.duplicate, "a retry of a stored post is answered as stored, not refused"
    await publish_event(nc.jetstream(), ORG, Failed(run=run, reason="x"), producer="terminal")
    with pytest.raises(Conflict):
        await appender.append(ORG, run, 1, posted(run, 30, 1))
    assert len(await stored(nc, run)) == 31


async def test_a_retry_of_a_partly_stored_post_stores_only_the_rest_in_order(
    nc: NATS, atomic: bool
) -> None:
    run = new_run()
    post = posted(run, 0, 10)
    # An earlier try stored the first four events one by one, then failed (a chained store cut
    # off mid-post), and the agent retries the whole post, here through another replica.
    for event in post[:4]:
        expected = (await HistoryReader(nc).last_event(ORG, run) or LastEvent(0, "", 0)).seq
        await append(nc, run_subject(ORG, run), [event.outgoing], expected_last=expected)
    result = await RunAppender(nc, HistoryReader(nc), atomic=atomic).append(ORG, run, 1, post)
    assert len(result.seqs) == 6 and not result.duplicate
    assert texts(await stored(nc, run)) == [e.outgoing.data.decode() for e in post]
    again = await RunAppender(nc, HistoryReader(nc), atomic=atomic).append(ORG, run, 1, post)
    assert again.duplicate and again.seqs == []
    assert len(await stored(nc, run)) == 10


async def test_an_event_stored_long_before_is_skipped_not_stored_twice(
    nc: NATS, atomic: bool
) -> None:
    run = new_run()
    appender = RunAppender(nc, HistoryReader(nc), atomic=atomic)
    await appender.append(ORG, run, 1, posted(run, 0, 3))
    status = Reset(run=run, attempt=1, n=0)
    await publish_event(nc.jetstream(), ORG, status, producer="call_agent")
    # Events 1 and 2 again, after an event of another producer: their Nats-Msg-Id names them.
    result = await appender.append(ORG, run, 1, posted(run, 1, 4))
    assert len(result.seqs) == 2
    ns = [decode_event(e.data).n for e in await stored(nc, run)]
    assert ns == [0, 1, 2, 0, 3, 4]


def proof_of(terminal: StoredEvent) -> Completeness | None:
    event = decode_event(terminal.data)
    assert isinstance(event, TerminalEvent)
    return event.completeness


async def test_the_terminal_proof_covers_every_event_stored_before_it(nc: NATS) -> None:
    run = new_run()
    await append(nc, run_subject(ORG, run), tokens(run, 0, 300), expected_last=0)
    history = HistoryReader(nc)
    seq = await publish_terminal(
        nc, history, ORG, Done(run=run, result=AgentResult(final_answer="ok"))
    )
    events = await stored(nc, run)
    assert seq == events[-1].seq and events[-1].type == "done"
    proof = proof_of(events[-1])
    assert proof is not None
    assert (proof.events, proof.sha256) == expected_proof((e.seq, e.data) for e in events[:-1])


class StoresAfterReading(HistoryReader):
    """A history reader after whose reading one more event lands: a late chunk racing the end."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc)
        self.late_landed = False

    async def read(self, org: str, run: str, *, after: int) -> AsyncIterator[StoredEvent]:
        async for event in super().read(org, run, after=after):
            yield event
        if not self.late_landed:
            self.late_landed = True
            late = Token(run=run, n=99, text="late")
            await publish_event(self._nc.jetstream(), org, late, producer="agent")


async def test_an_event_landing_while_the_end_is_proved_is_covered_not_lost(nc: NATS) -> None:
    run = new_run()
    await append(nc, run_subject(ORG, run), tokens(run, 0, 5), expected_last=0)
    history = StoresAfterReading(nc)
    await publish_terminal(nc, history, ORG, Failed(run=run, reason="x"))
    events = await stored(nc, run)
    assert history.late_landed
    assert [e.type for e in events] == ["token"] * 6 + ["failed"]
    proof = proof_of(events[-1])
    assert proof is not None
    assert (proof.events, proof.sha256) == expected_proof((e.seq, e.data) for e in events[:-1])


async def test_two_publishers_of_the_end_store_one_terminal_event(nc: NATS) -> None:
    run = new_run()
    await append(nc, run_subject(ORG, run), tokens(run, 0, 5), expected_last=0)
    history = HistoryReader(nc)
    results = await asyncio.gather(
        publish_terminal(nc, history, ORG, Failed(run=run, reason="from the worker")),
        publish_terminal(nc, history, ORG, Failed(run=run, reason="from a gateway")),
    )
    assert sorted(results, key=lambda r: r is None)[1] is None, "exactly one stored"
    assert [e.type for e in await stored(nc, run)] == ["token"] * 5 + ["failed"]
