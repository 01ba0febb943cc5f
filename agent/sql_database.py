"""Read-only access to an analysis database, for the agent's SQL tools.

Three independent locks, so no single mistake lets a query write: the connection's role can only
read (see ``agentstream.demo_dataset``), every query runs in a READ ONLY transaction with a
statement timeout, and it goes through a prepared statement, which admits one statement only.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import msgspec

MAX_QUERY_CHARS = 10_000
_SAMPLE_ROWS = 3


class SqlRefused(Exception):
    """The query was refused or failed; the message is safe to show the model."""


class UnknownConnection(Exception):
    """A ``connection_id`` that names no configured database."""


class QueryResult(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of one query, capped."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    duration_ms: float


class ReadOnlyDatabase:
    """One configured database, queried through a small pool."""

    def __init__(self, pool: asyncpg.Pool, *, statement_timeout_ms: int, row_cap: int) -> None:
        self._pool = pool
        self._statement_timeout_ms = statement_timeout_ms
        self._row_cap = row_cap

    async def query(self, sql: str, *args: object) -> QueryResult:
        """Run one read-only statement and return at most ``row_cap`` rows."""
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
                statement = await conn.prepare(sql)
                if not statement.get_attributes():
                    raise SqlRefused("refused: only queries that return rows may run")
                rows: list[list[Any]] = []
                truncated = False
                async for record in statement.cursor(*args):
                    if len(rows) == self._row_cap:
                        truncated = True
                        break
                    rows.append(list(record.values()))
                columns = [attribute.name for attribute in statement.get_attributes()]
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
        # Decimal, date and friends become JSON-friendly values once, here.
        plain_rows = msgspec.to_builtins(rows)
        return QueryResult(
            columns=columns,
            rows=plain_rows,
            row_count=len(rows),
            truncated=truncated,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
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
        self, dsns: dict[str, str], *, statement_timeout_ms: int = 5_000, row_cap: int = 200
    ) -> None:
        self._dsns = dsns
        self._statement_timeout_ms = statement_timeout_ms
        self._row_cap = row_cap
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
            pool, statement_timeout_ms=self._statement_timeout_ms, row_cap=self._row_cap
        )

    async def close(self) -> None:
        """Close every pool."""
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
