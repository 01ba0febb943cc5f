"""The durable record of conversations and final answers (PostgreSQL via asyncpg)."""

from __future__ import annotations

from typing import Any, NamedTuple

import asyncpg
import msgspec

from agentstream.runtime.migrations import migrate
from schemas import AgentResult, ChatInput, Turn, encode


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


class ConversationOfAnotherOrg(Exception):
    """The conversation ID is already another org's: nothing of this org may join it."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id} belongs to another org")
        self.conversation_id = conversation_id


# Creates the conversation for the org unless it exists, and names its org, in one round trip.
_CLAIM = (
    "WITH claimed AS (INSERT INTO conversations (id, org) VALUES ($1, $2)"
    " ON CONFLICT (id) DO NOTHING RETURNING org)"
    " SELECT org FROM claimed UNION ALL SELECT org FROM conversations WHERE id = $1 LIMIT 1"
)
_OWNER = "SELECT org FROM conversations WHERE id = $1"


async def _claim(conn: asyncpg.Connection, conversation_id: str, org: str) -> None:
    """Create ``conversation_id`` as ``org``'s, or check it already is; raises
    :class:`ConversationOfAnotherOrg` if it is another org's."""
    owner = await conn.fetchval(_CLAIM, conversation_id, org)
    if owner is None:
        # A concurrent claim committed the row while this one waited on it: the statement's
        # snapshot did not show it, a new one does.
        owner = await conn.fetchval(_OWNER, conversation_id)
    if owner != org:
        raise ConversationOfAnotherOrg(conversation_id)


class HistoryBounds(NamedTuple):
    """How much of a conversation a run is given: its newest ``max_turns`` turns, and no more
    than ``max_chars`` characters of them in all (older turns go first, then the oldest turn
    kept is cut)."""

    max_turns: int
    max_chars: int


class _SqlOnly(msgspec.Struct):
    """The part of a stored result a turn needs besides its answer."""

    sql_queries: list[_Statement] = msgspec.field(default_factory=list)


class _Statement(msgspec.Struct):
    sql: str
    error: str | None = None


_SQL_OF = msgspec.json.Decoder(_SqlOnly)


def _sql_of(result: str) -> list[str]:
    """The statements a stored result (JSON) ran without an error, in order."""
    return [q.sql for q in _SQL_OF.decode(result).sql_queries if q.error is None]


class StoredTurn(NamedTuple):
    """A stored turn of a conversation, with its run and when it was stored."""

    run_id: str
    turn: Turn
    # Seconds since the epoch.
    stored_at: float


def _turn_chars(turn: Turn) -> int:
    return len(turn.prompt) + len(turn.answer) + sum(len(sql) for sql in turn.sql)


def bounded(turns: list[Turn], max_chars: int) -> list[Turn]:
    """The newest of ``turns`` (oldest first) that fit in ``max_chars`` characters; the oldest
    kept is cut (its answer, then its SQL, then its prompt) if it alone overflows."""
    kept: list[Turn] = []
    left = max_chars
    for turn in reversed(turns):
        size = _turn_chars(turn)
        if size <= left:
            kept.append(turn)
            left -= size
            continue
        if left > 0:
            kept.append(_cut(turn, left))
        break
    kept.reverse()
    return kept


def _cut(turn: Turn, chars: int) -> Turn:
    prompt = turn.prompt[:chars]
    chars -= len(prompt)
    sql: list[str] = []
    for statement in turn.sql:
        if len(statement) > chars:
            break
        sql.append(statement)
        chars -= len(statement)
    return Turn(prompt=prompt, answer=turn.answer[:chars], sql=sql)


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

    async def claim_conversation(self, conversation_id: str, org: str) -> None:
        """Make ``conversation_id`` ``org``'s if no org has it yet; raises
        :class:`ConversationOfAnotherOrg` if another org has."""
        async with self._pool.acquire() as conn:
            await _claim(conn, conversation_id, org)

    async def save(self, run_id: str, chat: ChatInput, result: AgentResult) -> bool:
        """Store the run's answer; False when a previous attempt already stored it.

        Raises :class:`ConversationOfAnotherOrg` (and stores nothing) if the run's conversation
        is another org's: a turn is never attached to another org's conversation.
        """
        conversation_id = chat.conversation_id or run_id
        async with self._pool.acquire() as conn, conn.transaction():
            await _claim(conn, conversation_id, chat.org)
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

    async def history(
        self, conversation_id: str, org: str, *, before_run: str, bounds: HistoryBounds
    ) -> list[Turn]:
        """The conversation's turns stored before ``before_run``'s (never its own), oldest
        first, within ``bounds``: prompt, answer and the SQL each ran. Only ``org``'s own turns
        are read, whatever another org stored under the same ID."""
        if bounds.max_turns < 1 or bounds.max_chars < 1:
            return []
        rows = await self._pool.fetch(
            "SELECT prompt, final_answer, result::text AS result FROM messages"
            " WHERE conversation_id = $1 AND org = $2 AND run_id <> $3"
            " ORDER BY created_at DESC, run_id DESC LIMIT $4",
            conversation_id,
            org,
            before_run,
            bounds.max_turns,
        )
        turns = [
            Turn(prompt=row["prompt"], answer=row["final_answer"], sql=_sql_of(row["result"]))
            for row in reversed(rows)
        ]
        return bounded(turns, bounds.max_chars)

    async def conversation_org(self, conversation_id: str) -> str | None:
        """The org the conversation belongs to, if it is stored."""
        org: str | None = await self._pool.fetchval(_OWNER, conversation_id)
        return org

    async def turns(self, conversation_id: str, org: str, *, limit: int) -> list[StoredTurn]:
        """The conversation's newest ``limit`` stored turns of ``org``, oldest first."""
        rows = await self._pool.fetch(
            "SELECT run_id, prompt, final_answer, result::text AS result,"
            " extract(epoch FROM created_at)::float8 AS stored_at FROM messages"
            " WHERE conversation_id = $1 AND org = $2"
            " ORDER BY created_at DESC, run_id DESC LIMIT $3",
            conversation_id,
            org,
            limit,
        )
        return [
            StoredTurn(
                run_id=row["run_id"],
                turn=Turn(
                    prompt=row["prompt"],
                    answer=row["final_answer"],
                    sql=_sql_of(row["result"]),
                ),
                stored_at=row["stored_at"],
            )
            for row in reversed(rows)
        ]

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
