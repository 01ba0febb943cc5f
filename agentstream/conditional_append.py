"""Storing events in a run's subject on one condition: nothing else was stored there since.

JetStream checks ``Nats-Expected-Last-Subject-Sequence`` and stores in one step, so a decision
made from the run's last stored event ("the run has not finished", "no newer attempt took over")
cannot be raced by another store landing between the check and the write.

Several events go as one JetStream atomic batch (ADR-50, ``allow_atomic`` on the stream): every
message is written to the connection at once and only the commit waits for an answer, so a post
costs one round trip, and the events are stored all-or-nothing, in order, contiguously. A single
event is an ordinary conditional publish: an atomic batch on a file-backed R1 stream stages in a
store of its own, which one event does not need.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_BATCH_ID = "Nats-Batch-Id"
_BATCH_SEQ = "Nats-Batch-Sequence"
_BATCH_COMMIT = "Nats-Batch-Commit"

# JetStream API error codes (nats-server errors.json).
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_DUPLICATE_IN_PROCESS = 10158
_BATCH_HAS_DUPLICATE = 10201
_TOO_MANY_BATCHES = 10210


class OutgoingEvent(NamedTuple):
    """One encoded event and the headers it is stored with (its ``Nats-Msg-Id`` among them)."""

    data: bytes
    headers: dict[str, str]


class AppendError(Exception):
    """The events were not stored."""


class LastSequenceMoved(AppendError):
    """Something was stored in the subject after the expected sequence: look again."""


class AlreadyStored(AppendError):
    """The events' ``Nats-Msg-Id`` are already stored: this is a retry of a stored append."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"already stored (sequence {seq})")
        self.seq = seq


class AppendBusy(AppendError):
    """The stream is busy or unreachable for now; the same append may be retried."""


async def append(
    nc: NATS,
    subject: str,
    events: Sequence[OutgoingEvent],
    *,
    expected_last: int,
    timeout: float = 5.0,
) -> int:
    """Store ``events`` after ``subject``'s message ``expected_last`` (0: none); return the last
    stored sequence.

    Raises :class:`LastSequenceMoved` if the subject moved on, :class:`AlreadyStored` for a
    retried append, :class:`AppendBusy` when the store did not answer or asked to retry later,
    :class:`AppendError` for any other refusal. Nothing is stored unless this returns.
    """
    if not events:
        raise ValueError("nothing to append")
    condition = {EXPECTED_LAST_SUBJECT_SEQ: str(expected_last)}
    if len(events) == 1:
        only = events[0]
        return await _request(nc, subject, only.data, {**only.headers, **condition}, timeout)
    batch = uuid.uuid4().hex
    last = len(events)
    for index, event in enumerate(events[:-1], start=1):
        headers = {**event.headers, _BATCH_ID: batch, _BATCH_SEQ: str(index)}
        if index == 1:
            headers.update(condition)
        # No reply subject: the server answers only the commit, which fails if any part failed.
        await nc.publish(subject, event.data, headers=headers)
    final = events[-1]
    commit = {**final.headers, _BATCH_ID: batch, _BATCH_SEQ: str(last), _BATCH_COMMIT: "1"}
    return await _request(nc, subject, final.data, commit, timeout)


async def _request(
    nc: NATS, subject: str, data: bytes, headers: dict[str, str], timeout: float
) -> int:
    try:
        reply = await nc.request(subject, data, timeout=timeout, headers=headers)
    except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
        raise AppendBusy(f"no answer from the stream: {exc!r}") from None
    return _stored_sequence(reply.data)


def _stored_sequence(answer: bytes) -> int:
    """The last stored sequence from a publish acknowledgement, or the refusal it names."""
    try:
        ack = json.loads(answer)
    except ValueError:
        raise AppendError(f"unreadable acknowledgement {answer[:200]!r}") from None
    error = ack.get("error")
    if error is None:
        if ack.get("duplicate"):
            raise AlreadyStored(int(ack.get("seq", 0)))
        return int(ack["seq"])
    code = error.get("err_code")
    description = error.get("description", "")
    if code in _WRONG_LAST_SEQUENCE or code == _DUPLICATE_IN_PROCESS:
        raise LastSequenceMoved(description)
    if code == _BATCH_HAS_DUPLICATE:
        raise AlreadyStored(0)
    if code == _TOO_MANY_BATCHES or error.get("code") == 503:
        raise AppendBusy(description)
    raise AppendError(f"stream refused the events: {description} ({code})")
