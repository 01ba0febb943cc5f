"""Storing events in a run's subject on one condition: nothing else was stored there since.

JetStream checks ``Nats-Expected-Last-Subject-Sequence`` and stores in one step, so a decision
made from the run's last stored event ("the run has not finished", "no newer attempt took over")
cannot be raced by another store landing between the check and the write.

A message may hold several events (``agentstream.runtime.event_envelope``): they are stored
together.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

# JetStream API error codes (nats-server errors.json).
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_DUPLICATE_IN_PROCESS = 10158


class OutgoingEvent(NamedTuple):
    """A message to store: one encoded event, or several packed together, and its headers
    (its ``Nats-Msg-Id`` among them)."""

    data: bytes
    headers: dict[str, str]


class AppendError(Exception):
    """The events were not stored."""


class LastSequenceMoved(AppendError):
    """Something was stored in the subject after the expected sequence: look again."""


class AlreadyStored(AppendError):
    """The message's ``Nats-Msg-Id`` is already stored: this is a retry of a stored append."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"already stored (sequence {seq})")
        self.seq = seq


class AppendBusy(AppendError):
    """The stream is busy or unreachable for now; the same append may be retried."""


async def append(
    nc: NATS,
    subject: str,
    event: OutgoingEvent,
    *,
    expected_last: int,
    timeout: float = 5.0,
) -> int:
    """Store ``event`` after ``subject``'s message ``expected_last`` (0: none); return its
    stream sequence.

    Raises :class:`LastSequenceMoved` if the subject moved on, :class:`AlreadyStored` for a
    retried append, :class:`AppendBusy` when the store did not answer or asked to retry later,
    :class:`AppendError` for any other refusal. Nothing is stored unless this returns.
    """
    headers = {**event.headers, EXPECTED_LAST_SUBJECT_SEQ: str(expected_last)}
    return await _request(nc, subject, event.data, headers, timeout)


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
    if error.get("code") == 503:
        raise AppendBusy(description)
    raise AppendError(f"stream refused the events: {description} ({code})")
