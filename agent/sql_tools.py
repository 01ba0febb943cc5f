"""The agent's SQL tools on a read-only database; every query is kept for the result."""

from __future__ import annotations

from typing import Annotated

import msgspec
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool

from agent.sql_database import ReadOnlyDatabase, SqlRefused
from agent.tools import ToolRecorder
from schemas import SqlQuery


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def sql_tools(
    db: ReadOnlyDatabase, recorder: ToolRecorder, queries: list[SqlQuery]
) -> list[BaseTool]:
    """``list_tables``, ``describe_table`` and ``run_sql``; ``queries`` collects what ran."""

    async def list_tables(tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """List the database tables you can query, as schema.table."""

        async def action() -> str:
            return _json(await db.list_tables())

        return await recorder.run("list_tables", tool_call_id, {}, action)

    async def describe_table(table: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Columns, types and sample rows of a table (name it as schema.table)."""

        async def action() -> str:
            return _json(await db.describe_table(table))

        return await recorder.run("describe_table", tool_call_id, {"table": table}, action)

    async def run_sql(query: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Run one read-only SQL query (PostgreSQL); its rows come back as JSON, capped in size."""

        async def action() -> str:
            try:
                result = await db.query(query)
            except SqlRefused as exc:
                queries.append(SqlQuery(sql=query, error=str(exc)))
                raise
            queries.append(
                SqlQuery(sql=query, row_count=result.row_count, duration_ms=result.duration_ms)
            )
            answer: dict[str, object] = {
                "columns": result.columns,
                "rows": result.rows,
                "row_count": result.row_count,
                "truncated": result.truncated,
            }
            if result.note:
                answer["note"] = result.note
            return _json(answer)

        return await recorder.run("run_sql", tool_call_id, {"query": query}, action)

    return [
        StructuredTool.from_function(coroutine=fn) for fn in (list_tables, describe_table, run_sql)
    ]
