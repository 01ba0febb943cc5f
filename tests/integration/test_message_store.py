"""agentstream.runtime.migrations and agentstream.runtime.message_store on a throwaway
PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from agentstream.runtime.message_store import MessageStore, StoredMessage, open_pool
from agentstream.runtime.migrations import MIGRATIONS, migrate
from schemas import AgentResult, ChatInput, SandboxInfo, SqlQuery, ToolCall, Usage
from tests.conftest import throwaway_database

RESULT = AgentResult(
    final_answer="3 users, café ☕",
    model="gpt-test",
    sql_queries=[SqlQuery(sql="SELECT count(*) FROM users", row_count=1, duration_ms=1.25)],
    tool_calls=[ToolCall(call_id="c1", name="run_sql", input={"sql": "x", "l": [1, None]})],
    files=["out.csv"],
    usage=Usage(input_tokens=5, output_tokens=7),
    sandbox=SandboxInfo(id="run_a", backend="local"),
)


@pytest.fixture
async def dsn(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database, dropped afterwards."""
    async with throwaway_database(pg_server, "agentstream_unit") as fresh:
        yield fresh


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(dsn, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> MessageStore:
    return MessageStore(pool)


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


# Migrations


async def test_open_pool_applies_migrations(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await _tables(conn) == {"schema_migrations", "conversations", "messages"}
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_migrate_again_applies_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == 0
        assert await migrate(conn) == 0
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)


async def test_migrate_on_empty_database_applies_all(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrate(conn) == len(MIGRATIONS)
        assert await migrate(conn) == 0
    finally:
        await conn.close()


async def test_concurrent_migrations_both_succeed(dsn: str) -> None:
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        applied = await asyncio.wait_for(asyncio.gather(*(migrate(c) for c in conns)), 30)
        assert sorted(applied) == [0, 0, 0, len(MIGRATIONS)]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        for conn in conns:
            await conn.close()


# Message store


async def test_save_once_per_run(store: MessageStore, pool: asyncpg.Pool) -> None:
    chat = ChatInput(prompt="How many users?", conversation_id="conv_1", org="acme")
    assert await store.save("run_a", chat, RESULT) is True
    retried = AgentResult(final_answer="a different answer from a retry")
    assert await store.save("run_a", chat, retried) is False
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE run_id = 'run_a'") == 1
    stored = await store.get("run_a")
    assert stored is not None and stored.result == RESULT  # the first answer stays


async def test_get_returns_what_was_saved(store: MessageStore, pool: asyncpg.Pool) -> None:
    chat = ChatInput(prompt="How many users?", conversation_id="conv_1", org="acme")
    await store.save("run_a", chat, RESULT)
    assert await store.get("run_a") == StoredMessage(
        run_id="run_a",
        conversation_id="conv_1",
        org="acme",
        prompt="How many users?",
        result=RESULT,
    )
    assert await pool.fetchval("SELECT final_answer FROM messages WHERE run_id = 'run_a'") == (
        RESULT.final_answer
    )


async def test_get_unknown_run_is_none(store: MessageStore) -> None:
    assert await store.get("run_unknown") is None


async def test_conversation_defaults_to_the_run_id(store: MessageStore, pool: asyncpg.Pool) -> None:
    assert await store.save("run_b", ChatInput(prompt="hi"), AgentResult(final_answer="hello"))
    stored = await store.get("run_b")
    assert stored is not None
    assert (stored.conversation_id, stored.org) == ("run_b", "default")
    row = await pool.fetchrow("SELECT id, org FROM conversations")
    assert (row["id"], row["org"]) == ("run_b", "default")


async def test_runs_of_one_conversation_share_its_row(
    store: MessageStore, pool: asyncpg.Pool
) -> None:
    for run in ["run_1", "run_2", "run_3"]:
        chat = ChatInput(prompt=f"prompt {run}", conversation_id="conv_x", org="acme")
        assert await store.save(run, chat, AgentResult(final_answer=run))
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 1
    rows = await pool.fetch("SELECT run_id FROM messages WHERE conversation_id = 'conv_x'")
    assert sorted(r["run_id"] for r in rows) == ["run_1", "run_2", "run_3"]


async def test_concurrent_saves_of_one_run_store_one_row(
    store: MessageStore, pool: asyncpg.Pool
) -> None:
    chat = ChatInput(prompt="p", conversation_id="conv_race")
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(store.save("run_race", chat, RESULT) for _ in range(4))), 30
    )
    assert sorted(outcomes) == [False, False, False, True]
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1


async def test_special_characters_round_trip(store: MessageStore) -> None:
    result = AgentResult(
        final_answer="quotes ' \" back\\slash\nnewline 漢字 🎉",
        tool_calls=[ToolCall(call_id="c", name="n", input={"k": "'; DROP TABLE messages; --"})],
    )
    chat = ChatInput(prompt="'; DROP TABLE messages; --")
    assert await store.save("run_sql", chat, result)
    stored = await store.get("run_sql")
    assert stored is not None
    assert (stored.prompt, stored.result) == (chat.prompt, result)


@pytest.mark.parametrize(
    ("chat", "result"),
    [
        (
            ChatInput(prompt="p"),
            AgentResult(
                final_answer="a",
                tool_calls=[ToolCall(call_id="c", name="run_command", output="bin\x00ary")],
            ),
        ),
        (ChatInput(prompt="p"), AgentResult(final_answer="a\x00b")),
        (ChatInput(prompt="p\x00"), AgentResult(final_answer="a")),
    ],
    ids=["tool-output", "final-answer", "prompt"],
)
async def test_nul_characters_are_saved_as_replacement_characters(
    store: MessageStore, chat: ChatInput, result: AgentResult
) -> None:
    # PostgreSQL text and jsonb cannot hold NUL: it is stored as U+FFFD, the rest unchanged.
    assert await store.save("run_nul", chat, result)
    stored = await store.get("run_nul")
    assert stored is not None
    assert stored.prompt == chat.prompt.replace("\x00", "\ufffd")
    assert msgspec.json.encode(stored.result) == msgspec.json.encode(result).replace(
        b"\\u0000", "\ufffd".encode()
    )
