"""The analysis agent on the real demo database: right answers, and nothing that writes."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
import pytest
from langchain_core.messages import ToolMessage

from agent.sql_database import AnalysisDatabases
from agent.sql_tools import sql_tools
from agent.tools import ToolRecorder
from agentstream.devstack.demo_dataset import reader_dsn
from agentstream.devstack.stack import LocalStack
from schemas import BaseEvent, SqlQuery, ToolEnd
from tests.e2e.runs import assert_complete, read_whole_run, start_run

SAMPLE_QUESTION = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
HAND_WRITTEN = """
    SELECT provinsi FROM koperasi.koperasi
    GROUP BY provinsi ORDER BY avg(modal_awal) DESC LIMIT 5
"""


async def test_sample_question_names_the_top_five_provinces_in_order(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, SAMPLE_QUESTION)
    messages = await read_whole_run(http, gateway, run)

    assert_complete(messages)
    assert messages[-1].event == "done"
    tools = [m.json()["name"] for m in messages if m.event == "tool_start"]
    assert tools == ["list_tables", "describe_table", "run_sql"]
    result = messages[-1].json()["result"]
    expected = [r["provinsi"] for r in await db.fetch(HAND_WRITTEN)]
    named = re.findall(r"^\d+\. (.+?) — ", result["final_answer"], flags=re.MULTILINE)
    assert named == expected
    assert result["sql_queries"] and result["sql_queries"][-1]["row_count"] == 5
    assert result["sql_queries"][-1]["error"] is None


class EventLog:
    """Stands in for the chunk sink: keeps what the tools emit."""

    def __init__(self) -> None:
        self.events: list[BaseEvent] = []

    async def emit(self, event: BaseEvent) -> None:
        self.events.append(event)


FINGERPRINT = """
    SELECT (SELECT count(*) FROM koperasi.koperasi),
           (SELECT sum(modal_awal) FROM koperasi.koperasi),
           (SELECT md5(string_agg(nama || status, ',' ORDER BY id)) FROM koperasi.koperasi),
           (SELECT count(*) FROM koperasi.provinsi)
"""

HOSTILE = {
    "insert": "INSERT INTO koperasi.provinsi VALUES ('Atlantis', 'Laut', 'Poseidonia')",
    "update": "UPDATE koperasi.koperasi SET modal_awal = 0",
    "delete": "DELETE FROM koperasi.koperasi",
    "drop": "DROP TABLE koperasi.koperasi",
    "copy_to_program": "COPY koperasi.provinsi TO PROGRAM 'touch /tmp/agentstream_pwned'",
    "multi_statement": "SELECT 1; DELETE FROM koperasi.koperasi",
    "timeout": "SELECT pg_sleep(5)",
    "set_read_write": "SET transaction_read_only = off",
    "set_config": "SELECT set_config('transaction_read_only', 'off', true)",
    "read_server_file": "SELECT pg_read_file('/etc/passwd')",
    "dblink": "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM koperasi.provinsi') AS t(x int)",  # noqa: E501
    "lock": "LOCK TABLE koperasi.koperasi IN ACCESS EXCLUSIVE MODE",
    "other_tables": "SELECT * FROM messages",
    "very_long": "SELECT 1 " + "+ 1 " * 5_000,
    "create": "CREATE TABLE koperasi.evil (x int)",
}


@pytest.mark.parametrize("query", HOSTILE.values(), ids=HOSTILE.keys())
async def test_anything_that_is_not_a_plain_read_comes_back_as_a_tool_error(
    stack: LocalStack, db: asyncpg.Connection, query: str
) -> None:
    before = await db.fetchrow(FINGERPRINT)
    databases = AnalysisDatabases(
        {"demo": reader_dsn(stack.database_url)}, statement_timeout_ms=500
    )
    log = EventLog()
    queries: list[SqlQuery] = []
    try:
        tools = {
            t.name: t for t in sql_tools(await databases.get("demo"), ToolRecorder(log), queries)
        }  # type: ignore[arg-type]
        call: dict[str, Any] = {
            "type": "tool_call",
            "id": "call_1",
            "name": "run_sql",
            "args": {"query": query},
        }
        answer = await tools["run_sql"].ainvoke(call)
    finally:
        await databases.close()

    assert isinstance(answer, ToolMessage)
    assert str(answer.content).startswith("error:"), answer.content
    (end,) = [e for e in log.events if isinstance(e, ToolEnd)]
    assert end.error, "the tool_end event carries the error"
    assert queries[-1].error and queries[-1].row_count == 0
    assert await db.fetchrow(FINGERPRINT) == before, "the data is unchanged"
    assert not await db.fetchval("SELECT to_regclass('koperasi.evil') IS NOT NULL")


async def test_rows_are_capped_and_flagged(stack: LocalStack) -> None:
    databases = AnalysisDatabases({"demo": reader_dsn(stack.database_url)}, row_cap=10)
    try:
        result = await (await databases.get("demo")).query("SELECT * FROM koperasi.koperasi")
    finally:
        await databases.close()
    assert result.row_count == 10 and result.truncated


async def test_an_unknown_connection_fails_the_run_with_a_reason(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, SAMPLE_QUESTION, connection_id="no_such_db")
    messages = await read_whole_run(http, gateway, run)
    assert messages[-1].event == "failed"
    assert "unknown connection 'no_such_db'" in messages[-1].json()["reason"]
    assert not any(m.event == "reset" for m in messages), "a bad request is not retried"
