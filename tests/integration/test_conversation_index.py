"""agentstream.runtime.conversation_index on a real NATS server with the RUNS stream: a
conversation's runs recorded in order, listed, the newest found, conditional on the newest seen,
kept apart by org, republished live; and, on PostgreSQL, the org claim of the message store and
the history it gives a run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import count, pairwise

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agentstream.runtime import conversation_index
from agentstream.runtime.conversation_index import (
    INDEXED_PROMPT_CHARS,
    indexed_run,
    latest,
    latest_run,
    record_run,
    runs_of,
)
from agentstream.runtime.message_store import (
    ConversationOfAnotherOrg,
    HistoryBounds,
    MessageStore,
    open_pool,
)
from agentstream.runtime.nats_contract import (
    LastSequenceMoved,
    conversation_live_subject,
    conversation_subject,
    previous_seq,
    run_subject_any_org,
)
from schemas import AgentResult, ChatInput, InvalidIdError, SqlQuery, Turn
from tests.conftest import throwaway_database

_names = count()


def _conversation() -> str:
    return f"conv_{next(_names)}"


def test_subjects_are_apart_from_every_run_subject() -> None:
    assert conversation_subject("acme", "c1") == "runs.conv.acme.c1"
    assert conversation_live_subject("acme", "c1") == "live.conv.acme.c1"
    # Four tokens: no run filter (three tokens) can match a conversation's records.
    assert run_subject_any_org("c1").count(".") == 2
    with pytest.raises(InvalidIdError):
        conversation_subject("acme", "c.>")
    with pytest.raises(InvalidIdError):
        conversation_live_subject("a*", "c1")


async def test_runs_are_listed_in_order_and_the_newest_found(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, _ = connections
    conv = _conversation()
    assert await latest(gateway, "acme", conv) is None
    assert await latest_run(gateway, "acme", conv) is None
    assert await runs_of(gateway, "acme", conv, limit=10) == []
    seq = 0
    for n in range(5):
        stored = await record_run(gateway, "acme", conv, f"run_{n}", f"q{n}", expected_last=seq)
        assert stored.seq > seq and not stored.duplicate
        seq = stored.seq
    every = await runs_of(gateway, "acme", conv, limit=10)
    assert [r.run for r in every] == [f"run_{n}" for n in range(5)]
    assert [r.prompt for r in every] == [f"q{n}" for n in range(5)]
    assert [r.seq for r in every] == sorted(r.seq for r in every)
    assert all(a.ts <= b.ts for a, b in pairwise(every))
    newest_two = await runs_of(gateway, "acme", conv, limit=2)
    assert [r.run for r in newest_two] == ["run_3", "run_4"]
    after = await runs_of(gateway, "acme", conv, limit=10, after_seq=every[2].seq)
    assert [r.run for r in after] == ["run_3", "run_4"]
    assert await latest(gateway, "acme", conv) == every[-1]
    assert await latest_run(gateway, "acme", conv) == "run_4"
    with pytest.raises(ValueError, match="limit"):
        await runs_of(gateway, "acme", conv, limit=0)


async def test_a_long_conversation_is_read_across_batches(connections: tuple[NATS, NATS]) -> None:
    gateway, _ = connections
    conv = _conversation()
    seq = 0
    for n in range(300):
        seq = (await record_run(gateway, "acme", conv, f"r{n}", "", expected_last=seq)).seq
    runs = await runs_of(gateway, "acme", conv, limit=1000)
    assert [r.run for r in runs] == [f"r{n}" for n in range(300)]


async def test_a_record_is_stored_only_after_the_newest_it_saw(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    conv = _conversation()
    first = await record_run(gateway, "acme", conv, "run_a", "a", expected_last=0)
    # Two messages racing after run_a: one is stored, the other learns it lost.
    results = await asyncio.gather(
        record_run(gateway, "acme", conv, "run_b", "b", expected_last=first.seq),
        record_run(producer, "acme", conv, "run_c", "c", expected_last=first.seq),
        return_exceptions=True,
    )
    lost = [r for r in results if isinstance(r, LastSequenceMoved)]
    assert len(lost) == 1, results
    runs = [r.run for r in await runs_of(gateway, "acme", conv, limit=10)]
    assert runs[0] == "run_a" and len(runs) == 2 and runs[1] in ("run_b", "run_c")
    # A record expecting an empty index is refused once it has one.
    with pytest.raises(LastSequenceMoved):
        await record_run(gateway, "acme", conv, "run_d", "d", expected_last=0)


async def test_a_retried_record_is_stored_once(connections: tuple[NATS, NATS]) -> None:
    gateway, _ = connections
    conv = _conversation()
    first = await record_run(gateway, "acme", conv, "run_x", "x", expected_last=0)
    again = await record_run(gateway, "acme", conv, "run_x", "x", expected_last=0)
    assert again.duplicate and again.seq == first.seq
    assert [r.run for r in await runs_of(gateway, "acme", conv, limit=10)] == ["run_x"]


async def test_a_long_prompt_is_recorded_cut_to_fit_a_message(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, _ = connections
    conv = _conversation()
    # Past NATS's 1 MB message: a gateway may allow messages that long (MAX_MESSAGE_CHARS).
    await record_run(gateway, "acme", conv, "run_long", "é" * 1_500_000, expected_last=0)
    (indexed,) = await runs_of(gateway, "acme", conv, limit=10)
    assert len(indexed.prompt) == INDEXED_PROMPT_CHARS
    assert indexed.prompt == "é" * (INDEXED_PROMPT_CHARS - 1) + "…"


async def test_orgs_have_separate_indexes(connections: tuple[NATS, NATS]) -> None:
    gateway, _ = connections
    conv = _conversation()
    await record_run(gateway, "acme", conv, "run_acme", "mine", expected_last=0)
    await record_run(gateway, "other", conv, "run_other", "theirs", expected_last=0)
    assert await latest_run(gateway, "acme", conv) == "run_acme"
    assert [r.run for r in await runs_of(gateway, "other", conv, limit=5)] == ["run_other"]


async def test_records_are_republished_live_after_they_are_stored(
    connections: tuple[NATS, NATS],
) -> None:
    gateway, producer = connections
    conv = _conversation()
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_record(msg: Msg) -> None:
        arrived.put_nowait(msg)

    sub = await gateway.subscribe(conversation_live_subject("acme", conv), cb=on_record)
    try:
        await gateway.flush()
        # Run IDs are unique (a run's record is de-duplicated by its ID, stream-wide).
        one = await record_run(producer, "acme", conv, "run_live1", "q1", expected_last=0)
        two = await record_run(producer, "acme", conv, "run_live2", "q2", expected_last=one.seq)
        first = await asyncio.wait_for(arrived.get(), 5)
        second = await asyncio.wait_for(arrived.get(), 5)
    finally:
        await sub.unsubscribe()
    assert indexed_run(first).run == "run_live1" and indexed_run(first).seq == one.seq
    assert indexed_run(second).run == "run_live2" and indexed_run(second).seq == two.seq
    # A live record names the one before it: a missed record is noticed.
    assert previous_seq(second.headers or {}) == one.seq
    assert conversation_index.IndexedRun(two.seq, "run_live2", indexed_run(second).ts, "q2") == (
        indexed_run(second)
    )


@pytest.fixture
async def store(pg_server: str) -> AsyncIterator[MessageStore]:
    async with throwaway_database(pg_server, "agentstream_conv") as dsn:
        pool: asyncpg.Pool = await open_pool(dsn, max_size=4)
        try:
            yield MessageStore(pool)
        finally:
            await pool.close()


async def test_a_conversation_is_its_first_orgs_only(store: MessageStore) -> None:
    await store.claim_conversation("shared", "acme")
    await store.claim_conversation("shared", "acme")
    with pytest.raises(ConversationOfAnotherOrg):
        await store.claim_conversation("shared", "other")
    answer = AgentResult(final_answer="secret of acme")
    assert await store.save(
        "run_1", ChatInput(prompt="q", conversation_id="shared", org="acme"), answer
    )
    # Another org's run naming the conversation (say, started through Temporal directly) is
    # refused: its turn is never attached to acme's conversation.
    with pytest.raises(ConversationOfAnotherOrg):
        await store.save(
            "run_2", ChatInput(prompt="q", conversation_id="shared", org="other"), answer
        )
    assert await store.get("run_2") is None
    # Racing first claims by two orgs: exactly one wins.
    results = await asyncio.gather(
        *(store.claim_conversation("raced", org) for org in ("a", "b", "a", "b")),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ConversationOfAnotherOrg)]
    assert len(refused) == 2, results


async def test_history_is_the_orgs_own_earlier_turns_bounded(store: MessageStore) -> None:
    def result(n: int) -> AgentResult:
        return AgentResult(
            final_answer=f"answer {n}",
            sql_queries=[
                SqlQuery(sql=f"SELECT {n}", row_count=1),
                SqlQuery(sql="SELECT broken", error="syntax error"),
            ],
        )

    for n in range(4):
        chat = ChatInput(prompt=f"question {n}", conversation_id="talk", org="acme")
        assert await store.save(f"run_h{n}", chat, result(n))
    bounds = HistoryBounds(max_turns=10, max_chars=10_000)
    turns = await store.history("talk", "acme", before_run="run_next", bounds=bounds)
    # Oldest first; only the statements that ran.
    assert turns == [
        Turn(prompt=f"question {n}", answer=f"answer {n}", sql=[f"SELECT {n}"]) for n in range(4)
    ]
    # Never the run's own turn (a retried attempt after its answer was stored).
    own = await store.history("talk", "acme", before_run="run_h3", bounds=bounds)
    assert [t.prompt for t in own] == ["question 0", "question 1", "question 2"]
    newest = await store.history(
        "talk", "acme", before_run="x", bounds=bounds._replace(max_turns=2)
    )
    assert [t.prompt for t in newest] == ["question 2", "question 3"]
    # Each turn here is 10 + 8 + 8 characters: two fit in 62, the third is cut to 10.
    small = await store.history(
        "talk", "acme", before_run="x", bounds=bounds._replace(max_chars=62)
    )
    assert [t.prompt for t in small] == ["question 1", "question 2", "question 3"]
    assert small[0] == Turn(prompt="question 1", answer="", sql=[])
    # Another org naming the conversation reads nothing of acme's.
    assert await store.history("talk", "other", before_run="x", bounds=bounds) == []
    assert (
        await store.history("talk", "acme", before_run="x", bounds=bounds._replace(max_turns=0))
        == []
    )
