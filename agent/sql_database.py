"""Read-only access to an analysis database, for the agent's SQL tools.

Three independent locks, so no single mistake lets a query write: the connection's role can only
read (see ``agentstream.devstack.demo_dataset``), every query runs in a READ ONLY transaction with a
statement timeout, and it goes through a prepared statement, which admits one statement only.

Output is bounded twice: in rows, and in bytes before the rows reach the agent (values are cut
by the server, see ``agent.sql_bounds``, and rows are read in small batches up to the cap).
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import msgspec
from opentelemetry.trace import SpanKind

from agent.sql_bounds import bound_query, unpack_row
from agentstream.runtime import tracing

MAX_QUERY_CHARS = 10_000
_SAMPLE_ROWS = 3
# Rows fetched per round trip: with each row bounded, this bounds what one batch costs.
_BATCH_ROWS = 16


class SqlRefused(Exception):
    """The query was refused or failed; the message is safe to show the model."""


class UnknownConnection(Exception):
    """A ``connection_id`` that names no configured database."""


class QueryResult(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of one query, capped in rows and in bytes."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    # Something was left out: rows past a cap, or the tail of a value.
    truncated: bool
    duration_ms: float
    # What was left out and which setting decided it, for the model to read.
    note: str = ""


class ReadOnlyDatabase:
    """One configured database, queried through a small pool."""

    def __init__(
        self, pool: asyncpg.Pool, *, statement_timeout_ms: int, row_cap: int, max_bytes: int
    ) -> None:
        self._pool = pool
        self._statement_timeout_ms = statement_timeout_ms
        self._row_cap = row_cap
        self._max_bytes = max_bytes

    async def query(self, sql: str, *args: object) -> QueryResult:
        """Run one read-only query: at most ``row_cap`` rows, about ``max_bytes`` of JSON.

        Rows are kept while their JSON fits in ``max_bytes`` (the first always: its values are
        cut to fit). Only queries that can be read as a table run (SELECT, WITH, VALUES, TABLE).
        Traced, each query is a span (a refused one marked failed).
        """
        with tracing.span(
            "sql query",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "postgresql", "db.query.text": sql[:MAX_QUERY_CHARS]},
        ) as span:
            result = await self._query(sql, *args)
            span.set_attribute("db.response.returned_rows", result.row_count)
            return result

    async def _query(self, sql: str, *args: object) -> QueryResult:
        if len(sql) > MAX_QUERY_CHARS:
            raise SqlRefused(f"query longer than {MAX_QUERY_CHARS} characters")
        started = time.perf_counter()
        try:
            async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                # A query, not SET: it takes the snapshot, after which read-only mode is frozen.
                await conn.fetchval(
                    "SELECT set_config('statement_timeout', $1, true)",
                    str(self._statement_timeout_ms),
                )
                attributes = (await conn.prepare(sql)).get_attributes()
                if not attributes:
                    raise SqlRefused("refused: only queries that return rows may run")
                bounded = bound_query(sql, attributes, self._max_bytes)
                try:
                    statement = await conn.prepare(bounded.sql)
                except (asyncpg.PostgresSyntaxError, asyncpg.FeatureNotSupportedError):
                    raise SqlRefused(
                        "refused: only a single SELECT, WITH, VALUES or TABLE query may run"
                        " (with nothing after a final semicolon)"
                    ) from None
                rows: list[Any] = []
                size = 0
                cut_values = 0
                stopped_by = ""
                async for record in statement.cursor(*args, prefetch=_BATCH_ROWS):
                    if len(rows) == self._row_cap:
                        stopped_by = f"rows after the first {self._row_cap} (AGENT_SQL_ROW_CAP)"
                        break
                    values, cut = unpack_row(bounded, record)
                    # Decimal, date and friends become JSON-friendly values once, here.
                    row = msgspec.to_builtins(values)
                    row_size = len(msgspec.json.encode(row)) + 1
                    if rows and size + row_size > self._max_bytes:
                        stopped_by = (
                            f"rows past {self._max_bytes} bytes of output (AGENT_SQL_MAX_BYTES)"
                        )
                        break
                    rows.append(row)
                    size += row_size
                    cut_values += cut
                columns = [attribute.name for attribute in attributes]
        except asyncpg.QueryCanceledError:
            raise SqlRefused(
                f"query cancelled: it ran past the {self._statement_timeout_ms} ms limit"
            ) from None
        except asyncpg.ReadOnlySQLTransactionError:
            raise SqlRefused("refused: the database is read-only, only queries may run") from None
        except asyncpg.InsufficientPrivilegeError as exc:
            raise SqlRefused(f"refused: {exc}") from None
        except asyncpg.PostgresError as exc:
            raise SqlRefused(f"{type(exc).__name__}: {exc}") from None
        left_out = [stopped_by] if stopped_by else []
        if cut_values:
            left_out.append(
                f"the tail of {cut_values} value(s) longer than {bounded.value_bytes} bytes,"
                f" marked where cut (AGENT_SQL_MAX_BYTES={self._max_bytes})"
            )
        return QueryResult(
            columns=columns,
            rows=rows,
            row_count=len(rows),
            truncated=bool(left_out),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            note=f"left out: {'; '.join(left_out)}" if left_out else "",
        )

    async def list_tables(self) -> list[str]:
        """Tables and views this connection may read, as ``schema.table``."""
        result = await self.query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " ORDER BY 1"
        )
        return [row[0] for row in result.rows]

    async def describe_table(self, table: str) -> dict[str, Any]:
        """Columns, types and a few sample rows of a readable table."""
        tables = await self.list_tables()
        if table not in tables:
            raise SqlRefused(f"no readable table {table!r}; tables: {', '.join(tables)}")
        schema, name = table.split(".", 1)
        columns = await self.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            schema,
            name,
        )
        quoted = f'"{schema.replace(chr(34), chr(34) * 2)}"."{name.replace(chr(34), chr(34) * 2)}"'
        sample = await self.query(f"SELECT * FROM {quoted} LIMIT {_SAMPLE_ROWS}")
        return {
            "table": table,
            "columns": [{"name": c, "type": t} for c, t in columns.rows],
            "sample_rows": sample.rows,
        }


class AnalysisDatabases:
    """The configured databases by connection ID; pools open on first use."""

    def __init__(
        self,
        dsns: dict[str, str],
        *,
        statement_timeout_ms: int = 5_000,
        row_cap: int = 200,
        max_bytes: int = 65_536,
    ) -> None:
        self._dsns = dsns
        self._statement_timeout_ms = statement_timeout_ms
        self._row_cap = row_cap
        self._max_bytes = max_bytes
        self._pools: dict[str, asyncpg.Pool] = {}

    @property
    def connection_ids(self) -> list[str]:
        """The IDs a run may name."""
        return sorted(self._dsns)

    async def get(self, connection_id: str) -> ReadOnlyDatabase:
        """The database ``connection_id`` names."""
        dsn = self._dsns.get(connection_id)
        if dsn is None:
            raise UnknownConnection(
                f"unknown connection {connection_id!r}; configured: {', '.join(self._dsns)}"
            )
        pool = self._pools.get(connection_id)
        if pool is None:
            pool = await asyncpg.create_pool(dsn, min_size=0, max_size=4, command_timeout=60)
            self._pools[connection_id] = pool
        return ReadOnlyDatabase(
            pool,
            statement_timeout_ms=self._statement_timeout_ms,
            row_cap=self._row_cap,
            max_bytes=self._max_bytes,
        )

    async def close(self) -> None:
        """Close every pool."""
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
