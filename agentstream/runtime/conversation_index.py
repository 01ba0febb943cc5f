"""A conversation's runs, in order: one small record per run in the ``RUNS`` stream.

When ``POST /api/messages`` accepts a run, the gateway stores, right after the run's ``queued``
event, a record of it under ``nats_contract.conversation_subject(org, conversation)``: the run's
ID, when it was accepted and its prompt. Any replica can then list a conversation's runs, find
its latest one (one direct get) and follow new ones live (the stream republishes the records to
``conversation_live_subject``), without a database round trip or a consumer. A record's stream
sequence orders the conversation's runs; records live as long as the runs' events do (the
stream's max age), so a run listed here can always be streamed.

Each record is stored on condition that the index's newest record is the one the writer saw
(``Nats-Expected-Last-Subject-Sequence``): of two messages racing into one conversation, one is
stored and the other learns it lost, which is what keeps a conversation to one run at a time.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import NamedTuple

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from agentstream.runtime.nats_contract import (
    STREAM_NAME,
    LastSequenceMoved,
    Stored,
    conversation_subject,
    direct_get_batch,
    publish_conversation_record,
    stored_seq,
)
from agentstream.runtime.run_history import HistoryUnavailable

# Records read per direct-get request.
_BATCH = 256
_TIMEOUT_S = 5.0


class ConversationRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the index stores of one run (its message's data, JSON)."""

    run: str
    # When the gateway accepted it: ns since the epoch, the gateway's clock.
    ts: int
    prompt: str = ""


class IndexedRun(NamedTuple):
    """One run of a conversation, as its index holds it."""

    # The stream sequence of the run's record: the conversation's order of runs.
    seq: int
    run: str
    ts: int
    prompt: str


# A record names its run's question for listings and the conversation stream's announcement;
# the whole question is in the run's own request and stored turn. Cut so that a record always
# fits a NATS message whatever MAX_MESSAGE_CHARS allows (4 bytes a character at most).
INDEXED_PROMPT_CHARS = 8_000
_CUT = "…"

_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(ConversationRecord)


async def record_run(
    nc: NATS, org: str, conversation: str, run: str, prompt: str, *, expected_last: int
) -> Stored:
    """Store ``run`` as the conversation's next run, if its newest record is still at sequence
    ``expected_last`` (0: the conversation has none). A prompt longer than
    :data:`INDEXED_PROMPT_CHARS` is recorded cut, ending in "…".

    Raises ``nats_contract.LastSequenceMoved`` if another run got in first, ``AppendBusy`` or
    ``AppendError`` if the stream did not store it. A retried record of the same run is stored
    once: found as the newest, it is answered as a duplicate.
    """
    if len(prompt) > INDEXED_PROMPT_CHARS:
        prompt = prompt[: INDEXED_PROMPT_CHARS - len(_CUT)] + _CUT
    data = _ENCODE.encode(ConversationRecord(run=run, ts=time.time_ns(), prompt=prompt))
    try:
        return await publish_conversation_record(
            nc, org, conversation, run, data, expected_last=expected_last
        )
    except LastSequenceMoved:
        newest = await latest(nc, org, conversation)
        if newest is None or newest.run != run:
            raise
        return Stored(newest.seq, duplicate=True)


def indexed_run(msg: Msg) -> IndexedRun:
    """The run a stored index record names (a direct-get reply or a ``live.>`` republish).

    Raises ``KeyError`` without JetStream's headers, ``msgspec.DecodeError`` for data that is no
    record.
    """
    record = _DECODE.decode(msg.data)
    return IndexedRun(stored_seq(msg.headers or {}), record.run, record.ts, record.prompt)


async def latest(nc: NATS, org: str, conversation: str) -> IndexedRun | None:
    """The conversation's newest run, or None if it has none (within the stream's max age)."""
    js = nc.jetstream(timeout=_TIMEOUT_S)
    subject = conversation_subject(org, conversation)
    try:
        raw = await js.get_last_msg(STREAM_NAME, subject, direct=True)
    except NotFoundError:
        return None
    except TimeoutError:
        raise HistoryUnavailable(f"no answer from the stream for {subject}") from None
    record = _DECODE.decode(raw.data or b"")
    return IndexedRun(raw.seq or 0, record.run, record.ts, record.prompt)


async def latest_run(nc: NATS, org: str, conversation: str) -> str | None:
    """The ID of the conversation's newest run, or None if it has none."""
    found = await latest(nc, org, conversation)
    return found.run if found is not None else None


async def runs_of(
    nc: NATS, org: str, conversation: str, *, limit: int, after_seq: int = 0
) -> list[IndexedRun]:
    """The conversation's newest ``limit`` runs recorded after sequence ``after_seq``, oldest
    first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    newest: collections.deque[IndexedRun] = collections.deque(maxlen=limit)
    async with contextlib.aclosing(records(nc, org, conversation, after_seq=after_seq)) as found:
        async for indexed in found:
            newest.append(indexed)
    return list(newest)


async def records(
    nc: NATS, org: str, conversation: str, *, after_seq: int = 0
) -> AsyncGenerator[IndexedRun, None]:
    """Every run of the conversation recorded after sequence ``after_seq``, in order."""
    subject = conversation_subject(org, conversation)
    start = after_seq + 1
    while True:
        try:
            batch = await direct_get_batch(nc, subject, start, size=_BATCH, timeout=_TIMEOUT_S)
        except TimeoutError:
            raise HistoryUnavailable(f"no answer from the stream for {subject}") from None
        for msg in batch.messages:
            yield indexed_run(msg)
        if not batch.messages or batch.pending == 0:
            return
        start = batch.last_seq + 1
