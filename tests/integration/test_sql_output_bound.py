"""The SQL tool's output is bounded in bytes, and so is the agent's memory while a query runs.

On the real PostgreSQL, as the demo's read-only role. Memory is measured with tracemalloc, which
sees every Python object the driver allocates for the rows it receives.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from langchain_core.messages import ToolMessage

from agent.sql_database import AnalysisDatabases, QueryResult, ReadOnlyDatabase, SqlRefused
from agent.sql_tools import sql_tools
from agent.tools import ToolRecorder
from agentstream.devstack.demo_dataset import ensure_demo_dataset, reader_dsn
from schemas import BaseEvent, SqlQuery
from tests.conftest import throwaway_database

MAX_BYTES = 65_536
# What a query may cost the agent on top of its bounded result: driver buffers, a few batches
# of capped rows. Far below the hundreds of megabytes the queries below produce on the server.
MEMORY_BOUND = 8 * 1024 * 1024


@pytest.fixture(scope="module")
async def analysis_dsn(pg_server: str) -> AsyncIterator[str]:
    """A throwaway demo database, read as the read-only role the agent uses."""
    async with throwaway_database(pg_server, "agentstream_sql") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await ensure_demo_dataset(conn)
        finally:
            await conn.close()
        yield reader_dsn(dsn)


@pytest.fixture
async def db(analysis_dsn: str) -> AsyncIterator[ReadOnlyDatabase]:
    databases = AnalysisDatabases({"demo": analysis_dsn}, statement_timeout_ms=30_000)
    try:
        yield await databases.get("demo")
    finally:
        await databases.close()


async def _query_measured(db: ReadOnlyDatabase, sql: str) -> tuple[QueryResult, int]:
    """The result of ``sql`` and the peak of Python memory allocated while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = await db.query(sql)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - base


def _json_size(result: QueryResult) -> int:
    return len(msgspec.json.encode(result.rows))


async def test_one_huge_value_comes_back_cut_with_a_marker_and_memory_stays_bounded(
    db: ReadOnlyDatabase,
) -> None:
    result, peak = await _query_measured(db, "SELECT repeat('x', 300000000) AS big")

    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB allocated for one query"
    ((value,),) = result.rows
    assert value.startswith("x" * 1000)
    assert value.endswith("[truncated: 300000000 bytes in all]")
    assert result.truncated and result.row_count == 1
    assert _json_size(result) <= MAX_BYTES


async def test_many_wide_rows_stop_at_the_byte_cap_with_memory_bounded(
    db: ReadOnlyDatabase,
) -> None:
    # 200 rows of three 2 MB values each: 1.2 GB if fetched whole.
    sql = """
        SELECT i, repeat('a', 2000000) AS a, repeat('b', 2000000) AS b, repeat('c', 2000000) AS c
        FROM generate_series(1, 200) AS i
    """
    result, peak = await _query_measured(db, sql)

    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB allocated for one query"
    assert result.truncated and 0 < result.row_count < 200
    assert _json_size(result) <= MAX_BYTES
    assert [row[0] for row in result.rows] == list(range(1, result.row_count + 1)), "in order"


async def test_multibyte_text_is_cut_on_a_character_boundary(db: ReadOnlyDatabase) -> None:
    result = await db.query("SELECT repeat('é☕', 1000000)")
    ((value,),) = result.rows
    text, marker = value.split("…[truncated: ", 1)
    assert set(text) == {"é", "☕"} and marker == "5000000 bytes in all]"
    assert len(text.encode()) <= MAX_BYTES


async def test_small_results_come_back_whole_with_their_types(db: ReadOnlyDatabase) -> None:
    sql = """
        SELECT 1 AS n, 1 AS n, 2.5::float8 AS f, 12.50::numeric AS d, true AS b, NULL::text AS t,
               'kecil' AS s, '{"a": [1]}'::jsonb AS j, date '2026-01-02' AS day;
    """
    result = await db.query(sql)
    assert result.columns == ["n", "n", "f", "d", "b", "t", "s", "j", "day"]
    assert result.rows == [[1, 1, 2.5, "12.50", True, None, "kecil", '{"a": [1]}', "2026-01-02"]]
    assert not result.truncated


async def test_trailing_semicolons_and_comments_do_not_break_the_wrapping(
    db: ReadOnlyDatabase,
) -> None:
    result = await db.query("SELECT 'a;' AS s ; ;\n")
    assert result.rows == [["a;"]]
    result = await db.query("SELECT 1 AS n -- a comment to the end")
    assert result.rows == [[1]]


@pytest.mark.parametrize("sql", ["SHOW search_path", "EXPLAIN SELECT 1", "SELECT 1; -- end"])
async def test_statements_that_cannot_be_bounded_are_refused_with_the_reason(
    db: ReadOnlyDatabase, sql: str
) -> None:
    with pytest.raises(SqlRefused, match="only a single SELECT, WITH, VALUES or TABLE query"):
        await db.query(sql)


async def test_the_demo_table_reads_as_before(db: ReadOnlyDatabase) -> None:
    result = await db.query(
        "SELECT provinsi, count(*) FROM koperasi.koperasi GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3"
    )
    assert result.row_count == 3 and not result.truncated
    assert all(isinstance(name, str) and isinstance(n, int) for name, n in result.rows)


class _EventLog:
    def __init__(self) -> None:
        self.events: list[BaseEvent] = []

    async def emit(self, event: BaseEvent) -> None:
        self.events.append(event)


async def test_the_run_sql_tool_answers_a_huge_value_with_a_bounded_marked_result(
    db: ReadOnlyDatabase,
) -> None:
    queries: list[SqlQuery] = []
    tools = {t.name: t for t in sql_tools(db, ToolRecorder(_EventLog()), queries)}  # type: ignore[arg-type]
    call: dict[str, Any] = {
        "type": "tool_call",
        "id": "call_1",
        "name": "run_sql",
        "args": {"query": "SELECT repeat('x', 30000000)"},
    }
    answer = await tools["run_sql"].ainvoke(call)

    assert isinstance(answer, ToolMessage)
    content = str(answer.content)
    assert len(content.encode()) <= MAX_BYTES + 1024
    body = msgspec.json.decode(content)
    assert body["truncated"] is True and "AGENT_SQL_MAX_BYTES" in body["note"]
    assert body["rows"][0][0].endswith("[truncated: 30000000 bytes in all]")
    assert queries[-1].row_count == 1 and queries[-1].error is None
