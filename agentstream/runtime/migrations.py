"""The database schema, applied idempotently by every service that touches it at start-up."""

from __future__ import annotations

import asyncpg

# Serialises concurrent start-ups (gateway replicas and workers racing to migrate).
_LOCK_KEY = 0x6167_656E_7473  # "agents"

# Append only: an applied migration is never edited, a change is a new entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        id          text PRIMARY KEY,
        org         text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE messages (
        run_id          text PRIMARY KEY,
        conversation_id text NOT NULL REFERENCES conversations (id),
        org             text NOT NULL,
        prompt          text NOT NULL,
        final_answer    text NOT NULL,
        result          jsonb NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at);
    """,
)


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the migrations this database lacks; return how many were applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        return len(MIGRATIONS) - current
