"""The durable record of conversations and final answers (PostgreSQL via asyncpg)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from agentstream.runtime.migrations import migrate
from schemas import AgentResult, ChatInput, encode


def _storable(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL; command output can. Keep it visible instead."""
    return text.replace("\x00", "\ufffd")


def _storable_json(value: Any) -> Any:
    """``value`` (decoded JSON) with NUL replaced in every string, keys included."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    if isinstance(value, dict):
        return {_storable(k): _storable_json(v) for k, v in value.items()}
    return value


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One run's stored answer."""

    run_id: str
    conversation_id: str
    org: str
    prompt: str
    result: AgentResult


async def open_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool and bring the schema up to date before anyone uses it."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, command_timeout=30)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


class MessageStore:
    """Reads and writes of stored messages; one row per run, whatever the retries."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save(self, run_id: str, chat: ChatInput, result: AgentResult) -> bool:
        """Store the run's answer; False when a previous attempt already stored it."""
        conversation_id = chat.conversation_id or run_id
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO conversations (id, org) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                conversation_id,
                chat.org,
            )
            status = await conn.execute(
                "INSERT INTO messages"
                " (run_id, conversation_id, org, prompt, final_answer, result)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (run_id) DO NOTHING",
                run_id,
                conversation_id,
                chat.org,
                _storable(chat.prompt),
                _storable(result.final_answer),
                encode(_storable_json(msgspec.to_builtins(result))).decode(),
            )
        return bool(status == "INSERT 0 1")

    async def get(self, run_id: str) -> StoredMessage | None:
        """The stored answer of ``run_id``, if any."""
        row = await self._pool.fetchrow(
            "SELECT run_id, conversation_id, org, prompt, result::text AS result"
            " FROM messages WHERE run_id = $1",
            run_id,
        )
        if row is None:
            return None
        return StoredMessage(
            run_id=row["run_id"],
            conversation_id=row["conversation_id"],
            org=row["org"],
            prompt=row["prompt"],
            result=msgspec.json.decode(row["result"], type=AgentResult),
        )
