"""Reading a run's stored events from the ``RUNS`` stream, in order, after a given event ID.

History is read with JetStream's batched direct get (``nats_contract.direct_get_batch``): no
consumer is created, so thousands of clients resuming at once cost the cluster only reads. Single
messages are read with nats.py's own direct get.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from agentstream.runtime.nats_contract import (
    STREAM_NAME,
    DirectBatch,
    LastEvent,
    Producer,
    StoredEvent,
    direct_get_batch,
    last_event_of,
    msg_id_of,
    parse_subject,
    run_subject,
    run_subject_any_org,
    stored_events,
    unpack,
)
from schemas import Status, decode_event, message_seq

_BATCH = 256


class HistoryUnavailable(Exception):
    """The stream did not answer a history read in time."""


class HistoryReader:
    """Reads runs' events after a given event ID, in order."""

    def __init__(self, nc: NATS, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout_s)
        self._timeout_s = timeout_s

    async def read(self, org: str, run: str, *, after: int) -> AsyncGenerator[StoredEvent, None]:
        """Every stored event of ``org``'s ``run`` whose ID is greater than ``after``.

        A caller that stops early closes it (``contextlib.aclosing``), and it closes its own
        reads in turn.
        """
        # The message holding event ``after`` may hold later events too.
        start = max(message_seq(after), 1)
        async with contextlib.aclosing(self._messages(run_subject(org, run), start)) as messages:
            async for msg in messages:
                for event in stored_events(msg):
                    if event.id > after:
                        yield event

    async def last_number(self, org: str, run: str, producer: Producer, attempt: int) -> int:
        """The number of the newest event ``producer`` stored for ``attempt`` of the run (from
        the messages' ``Nats-Msg-Id``), or -1 if it stored none. Reads the whole run."""
        last = -1
        async for msg in self._messages(run_subject(org, run), 1):
            named = msg_id_of(msg.headers or {})
            if named is not None and named.producer == producer and named.attempt == attempt:
                last = max(last, named.n)
        return last

    async def has_events(self, org: str, run: str) -> bool:
        """Whether the stream holds any event of ``org``'s ``run``."""
        return await self._first(run_subject(org, run)) is not None

    async def first_org(self, run: str) -> str | None:
        """The org the run's first stored event was published under, if any.

        Only for runs nothing else knows (open mode): reads are otherwise always org-exact, so
        events another org's producer publishes under the same run ID are never merged in.
        """
        first = await self._first(run_subject_any_org(run))
        named = parse_subject(first.subject or "") if first is not None else None
        return named.org if named is not None else None

    async def trace_id(self, org: str, run: str) -> str | None:
        """The trace ID the run's first stored event carries: its first status event, which
        names the run's trace when it was traced (``schemas.Status.trace_id``)."""
        first = await self._first(run_subject(org, run))
        if first is None or not first.data:
            return None
        try:
            event = decode_event(unpack(first.headers or {}, first.data)[0][1])
        except ValueError:  # msgspec's errors too
            return None
        return event.trace_id if isinstance(event, Status) else None

    async def last_event(self, org: str, run: str) -> LastEvent | None:
        """Sequence, type and attempt of the run's newest stored event, if it has any."""
        try:
            msg = await self._js.get_last_msg(STREAM_NAME, run_subject(org, run), direct=True)
        except NotFoundError:
            return None
        except TimeoutError:
            raise HistoryUnavailable(f"no answer from stream for {run}") from None
        return last_event_of(msg.headers or {})

    async def _first(self, subject: str) -> RawStreamMsg | None:
        """The first stored message of ``subject``, if any."""
        try:
            return await self._js.get_msg(
                STREAM_NAME, seq=1, subject=subject, next=True, direct=True
            )
        except NotFoundError:
            return None
        except TimeoutError:
            raise HistoryUnavailable(f"no answer from stream for {subject}") from None

    async def _messages(self, subject: str, start: int) -> AsyncGenerator[Msg, None]:
        """Every stored message of ``subject`` from sequence ``start``, in order."""
        while True:
            batch = await self._read_batch(subject, start)
            for msg in batch.messages:
                yield msg
            if not batch.messages or batch.pending == 0:
                return
            start = batch.last_seq + 1

    async def _read_batch(self, subject: str, start: int) -> DirectBatch:
        try:
            return await direct_get_batch(
                self._nc, subject, start, size=_BATCH, timeout=self._timeout_s
            )
        except TimeoutError:
            raise HistoryUnavailable(f"no answer from stream for {subject}") from None
