"""The NATS contract: how a run's events are named, stored, de-duplicated and read back.

Everything the gateway, the worker and the tools agree on about NATS lives here: the ``RUNS``
stream and its republish to ``live.>``, the subjects of a run, the headers a stored message
carries (its ``Nats-Msg-Id`` among them), how several events share one message, and how they are
stored and read back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, RePublish, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError

from schemas import TERMINAL_EVENT_TYPES, BaseEvent, encode, event_id, event_type, require_id

# --- The stream --------------------------------------------------------------------------------

STREAM_NAME = "RUNS"
# Long enough to absorb a producer's retries after a network fault or a process restart.
DUPLICATE_WINDOW_S = 120.0


def runs_stream_config(max_age_s: float, replicas: int) -> StreamConfig:
    """The ``RUNS`` stream: stored before republished to ``live.>`` so live never leads history."""
    return StreamConfig(
        name=STREAM_NAME,
        subjects=["runs.>"],
        storage=StorageType.FILE,
        max_age=max_age_s,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        allow_direct=True,
        discard=DiscardPolicy.OLD,
        republish=RePublish(src="runs.>", dest="live.>"),
    )


async def ensure_runs_stream(js: JetStreamContext, *, max_age_s: float, replicas: int) -> None:
    """Create the stream, or bring an existing one's configuration up to date."""
    config = runs_stream_config(max_age_s, replicas)
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


# --- Subjects ----------------------------------------------------------------------------------
# A run ID or org ID is a subject token: ``require_id`` keeps ``.``, ``*`` and ``>`` out.


def run_subject(org: str, run: str) -> str:
    """The JetStream subject producers publish a run's events to."""
    return f"runs.{require_id('org', org)}.{require_id('run', run)}"


def run_subject_any_org(run: str) -> str:
    """A filter matching ``run``'s stored events whatever its org (run IDs are unique)."""
    return f"runs.*.{require_id('run', run)}"


def live_subject(org: str, run: str) -> str:
    """The core-NATS subject the stream republishes ``run``'s events to."""
    return f"live.{require_id('org', org)}.{require_id('run', run)}"


# --- Headers and de-duplication keys -----------------------------------------------------------

# Carried with the message (and kept on republish and direct get) so relays can route by type
# without decoding the payload.
EVENT_TYPE_HEADER = "Agentstream-Type"
# Lets the bridge see which attempt last wrote to a run without decoding a payload.
EVENT_ATTEMPT_HEADER = "Agentstream-Attempt"
# Whoever publishes a run's terminal event (worker, or a gateway for a workflow that closed
# without one) uses this producer with attempt 1 and n 0: one Nats-Msg-Id, stored once.
TERMINAL_PRODUCER = "terminal"
# Events agents post through the callback bridge.
AGENT_PRODUCER = "agent"


def msg_id(event: BaseEvent, producer: str) -> str:
    """The de-duplication key: a retried publish of the same event is stored once."""
    return message_id(event.run, producer, event.attempt, event.n)


def message_id(run: str, producer: str, attempt: int, n: int) -> str:
    """The de-duplication key of a producer's message whose (last) event is number ``n``."""
    return f"{run}:{producer}:{attempt}:{n}"


class MsgIdParts(NamedTuple):
    """What a ``Nats-Msg-Id`` names besides the run."""

    producer: str
    attempt: int
    n: int


def parse_msg_id(value: str) -> MsgIdParts | None:
    """The producer, attempt and counter of a :func:`msg_id`, or None if it is not one."""
    parts = value.rsplit(":", 3)
    if len(parts) != 4 or not (parts[2].isdecimal() and parts[3].isdecimal()):
        return None
    return MsgIdParts(parts[1], int(parts[2]), int(parts[3]))


def event_headers(event: BaseEvent, producer: str) -> dict[str, str]:
    """The headers every stored event carries: its de-duplication key, type and attempt."""
    return {
        "Nats-Msg-Id": msg_id(event, producer),
        EVENT_TYPE_HEADER: event_type(event),
        EVENT_ATTEMPT_HEADER: str(event.attempt),
    }


async def publish_event(
    js: JetStreamContext,
    org: str,
    event: BaseEvent,
    *,
    producer: str,
    timeout: float = 5.0,
) -> int:
    """Store ``event`` in the run's subject and return its stream sequence.

    Returns only after JetStream acknowledged the store, so the caller may retry on any error.
    """
    ack = await js.publish(
        run_subject(org, event.run),
        encode(event),
        timeout=timeout,
        headers=event_headers(event, producer),
    )
    return ack.seq


# --- Several events in one message -------------------------------------------------------------
# One message per bridge post makes the post one publish and one acknowledgement, stored all or
# none and in order by construction, and lets JetStream's own ``Nats-Msg-Id`` de-duplication
# recognise a retried post. The message's data is a JSON array of the events,
# ``Agentstream-Events`` their count and ``Agentstream-Type`` their types, comma-separated, so a
# relay frames every event without decoding one. A message without ``Agentstream-Events`` holds a
# single event.

EVENT_COUNT_HEADER = "Agentstream-Events"

_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])


class MalformedEnvelope(ValueError):
    """A message whose headers and data disagree on the events it holds."""


def pack(types: Sequence[str], datas: Sequence[bytes]) -> tuple[dict[str, str], bytes]:
    """The headers naming several encoded events, and the data holding them, in order."""
    return (
        {EVENT_COUNT_HEADER: str(len(datas)), EVENT_TYPE_HEADER: ",".join(types)},
        b"[" + b",".join(datas) + b"]",
    )


def unpack(headers: Mapping[str, str], data: bytes) -> list[tuple[str, bytes]]:
    """The type and JSON bytes of every event a stored message holds, in order."""
    types = headers.get(EVENT_TYPE_HEADER, "message")
    if EVENT_COUNT_HEADER not in headers:
        return [(types, data)]
    names = types.split(",")
    try:
        parts = _SPLIT.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedEnvelope(f"unreadable events: {exc}") from None
    if len(parts) != len(names) or headers[EVENT_COUNT_HEADER] != str(len(parts)):
        raise MalformedEnvelope(f"{len(parts)} events, {len(names)} types")
    return [(name, bytes(part)) for name, part in zip(names, parts, strict=True)]


# --- Stored events -----------------------------------------------------------------------------


class StoredEvent(NamedTuple):
    """One stored event, as the gateway relays it.

    ``seq`` is the stream sequence of the message holding it and ``position`` its place there;
    ``prev_seq`` is the run's message stored before (0 for its first).
    """

    seq: int
    position: int
    prev_seq: int
    type: str
    data: bytes
    # The org its subject names (``runs.<org>.<run>``); empty where not needed.
    org: str = ""

    @property
    def id(self) -> int:
        """The event's ID (``schemas.event_ids``): what clients resume after."""
        return event_id(self.seq, self.position)

    @property
    def terminal(self) -> bool:
        """Whether this event ends the run's stream."""
        return self.type in TERMINAL_EVENT_TYPES


def events_of(
    seq: int, prev_seq: int, headers: Mapping[str, str], data: bytes, org: str = ""
) -> list[StoredEvent]:
    """Every event of the message stored at ``seq``, in order.

    Raises :class:`MalformedEnvelope` for a message whose headers and data disagree.
    """
    return [
        StoredEvent(seq, position, prev_seq, type_, part, org)
        for position, (type_, part) in enumerate(unpack(headers, data))
    ]


# --- Conditional stores ------------------------------------------------------------------------
# Storing events in a run's subject on one condition: nothing else was stored there since.
# JetStream checks ``Nats-Expected-Last-Subject-Sequence`` and stores in one step, so a decision
# made from the run's last stored event ("the run has not finished", "no newer attempt took over")
# cannot be raced by another store landing between the check and the write.

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
