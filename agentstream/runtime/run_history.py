"""Reading a run's stored events from the ``RUNS`` stream, in order, after a given event ID.

Uses JetStream's batched direct get (``next_by_subj`` + ``batch``): no consumer is created, so
thousands of clients resuming at once cost the cluster only reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agentstream.runtime.nats_contract import (
    EVENT_ATTEMPT_HEADER,
    EVENT_COUNT_HEADER,
    EVENT_TYPE_HEADER,
    STREAM_NAME,
    StoredEvent,
    events_of,
    parse_msg_id,
    run_subject,
    run_subject_any_org,
)
from schemas import message_seq

_BATCH = 256


def _org_of_subject(subject: str) -> str:
    """``runs.<org>.<run>`` → ``<org>``."""
    parts = subject.split(".")
    return parts[1] if len(parts) == 3 else ""


class LastEvent(NamedTuple):
    """What a conditional append needs to know of a run's newest event."""

    # The stream sequence of the message holding it.
    seq: int
    type: str
    attempt: int
    # Who stored it and its number among that producer's events of the attempt (from its
    # Nats-Msg-Id): tells how much of a retried post is already stored.
    producer: str = ""
    n: int = -1


class HistoryUnavailable(Exception):
    """The stream did not answer a history read in time."""


class HistoryReader:
    """Reads runs' events after a given event ID, in order."""

    def __init__(self, nc: NATS, *, timeout_s: float = 5.0, stream: str = STREAM_NAME) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._api = f"$JS.API.DIRECT.GET.{stream}"

    async def read(self, org: str, run: str, *, after: int) -> AsyncIterator[StoredEvent]:
        """Every stored event of ``org``'s ``run`` whose ID is greater than ``after``."""
        # The message holding event ``after`` may hold later events too.
        async for msg in self._messages(run_subject(org, run), max(message_seq(after), 1)):
            headers = msg.headers or {}
            seq = int(headers["Nats-Sequence"])
            org_of_subject = _org_of_subject(headers.get("Nats-Subject", ""))
            for event in events_of(seq, 0, headers, msg.data, org_of_subject):
                if event.id > after:
                    yield event

    async def last_number(self, org: str, run: str, producer: str, attempt: int) -> int:
        """The number of the newest event ``producer`` stored for ``attempt`` of the run (from
        the messages' ``Nats-Msg-Id``), or -1 if it stored none. Reads the whole run."""
        last = -1
        async for msg in self._messages(run_subject(org, run), 1):
            named = parse_msg_id((msg.headers or {}).get("Nats-Msg-Id", ""))
            if named is not None and named.producer == producer and named.attempt == attempt:
                last = max(last, named.n)
        return last

    async def has_events(self, org: str, run: str) -> bool:
        """Whether the stream holds any event of ``org``'s ``run``."""
        batch, _ = await self._read_batch(run_subject(org, run), 1, size=1)
        return bool(batch)

    async def first_org(self, run: str) -> str | None:
        """The org the run's first stored event was published under, if any.

        Only for runs nothing else knows (open mode): reads are otherwise always org-exact, so
        events another org's producer publishes under the same run ID are never merged in.
        """
        batch, _ = await self._read_batch(run_subject_any_org(run), 1, size=1)
        if not batch:
            return None
        return _org_of_subject((batch[0].headers or {}).get("Nats-Subject", ""))

    async def last_event(self, org: str, run: str) -> LastEvent | None:
        """Sequence, type and attempt of the run's newest stored event, if it has any."""
        request = {"last_by_subj": run_subject(org, run)}
        try:
            msg = await self._nc.request(
                self._api, json.dumps(request).encode(), timeout=self._timeout_s
            )
        except TimeoutError:
            raise HistoryUnavailable(f"no answer from stream for {run}") from None
        headers = msg.headers or {}
        if headers.get("Status") is not None:
            return None
        named = parse_msg_id(headers.get("Nats-Msg-Id", ""))
        # A message of several events names all their types; the last one is the newest.
        types = headers.get(EVENT_TYPE_HEADER, "message")
        return LastEvent(
            seq=int(headers["Nats-Sequence"]),
            type=types.rsplit(",", 1)[-1] if EVENT_COUNT_HEADER in headers else types,
            attempt=int(headers.get(EVENT_ATTEMPT_HEADER, "0")),
            producer=named.producer if named else "",
            n=named.n if named else -1,
        )

    async def _messages(self, subject: str, start: int) -> AsyncIterator[Msg]:
        """Every stored message of ``subject`` from sequence ``start``, in order."""
        while True:
            batch, pending = await self._read_batch(subject, start)
            for msg in batch:
                yield msg
            if not batch or pending == 0:
                return
            start = int((batch[-1].headers or {})["Nats-Sequence"]) + 1

    async def _read_batch(
        self, subject: str, start: int, size: int = _BATCH
    ) -> tuple[list[Msg], int]:
        """A batch of ``subject``'s messages from sequence ``start``, and how many lie beyond."""
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg)

        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=on_reply)
        try:
            request = {"seq": start, "next_by_subj": subject, "batch": size}
            await self._nc.publish(self._api, json.dumps(request).encode(), reply=inbox)
            messages: list[Msg] = []
            while True:
                try:
                    msg = await asyncio.wait_for(replies.get(), self._timeout_s)
                except TimeoutError:
                    raise HistoryUnavailable(f"no answer from stream for {subject}") from None
                headers = msg.headers or {}
                status = headers.get("Status")
                if status == "404":
                    return messages, 0
                if status is not None:
                    # 204 end of batch: what is left beyond it decides whether to read on.
                    return messages, int(headers.get("Nats-Num-Pending", "0"))
                messages.append(msg)
        finally:
            await sub.unsubscribe()
