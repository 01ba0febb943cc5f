"""The NATS contract: how a run's events are named, stored, de-duplicated and read back.

Everything the gateway, the worker and the tools agree on about NATS lives here: the ``RUNS``
stream and its republish to ``live.>``, the subjects of a run, the headers a stored message
carries (its ``Nats-Msg-Id`` among them), how several events share one message, and how they are
stored and read back.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, RePublish, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError

from schemas import (
    TERMINAL_EVENT_TYPES,
    BaseEvent,
    Stage,
    encode,
    event_id,
    event_type,
    require_id,
)

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


# A conversation's index: one record per run accepted in it, in order (``conversation_index``).
# Four tokens under ``runs.``, so the ``RUNS`` stream stores and republishes them with no change
# to its configuration or to the services' NATS permissions, and no run subject (three tokens,
# ``runs.*.<run>`` included) can ever match one.
_CONVERSATION_TOKEN = "conv"


def conversation_subject(org: str, conversation: str) -> str:
    """The subject of ``org``'s ``conversation``'s index records: ``runs.conv.<org>.<conv>``."""
    org, conversation = require_id("org", org), require_id("conversation", conversation)
    return f"runs.{_CONVERSATION_TOKEN}.{org}.{conversation}"


def conversation_live_subject(org: str, conversation: str) -> str:
    """The core-NATS subject the stream republishes the conversation's index records to."""
    org, conversation = require_id("org", org), require_id("conversation", conversation)
    return f"live.{_CONVERSATION_TOKEN}.{org}.{conversation}"


def conversation_record_headers(run: str) -> dict[str, str]:
    """The headers of ``run``'s index record: its ``Nats-Msg-Id`` (``<run>:conversation:1:0``)
    stores a retried record once."""
    return {MSG_ID_HEADER: f"{require_id('run', run)}:{Producer.CONVERSATION}:1:0"}


class RunSubject(NamedTuple):
    """What a run's subject names."""

    org: str
    run: str


def parse_subject(subject: str) -> RunSubject | None:
    """The org and run of a ``runs.<org>.<run>`` or ``live.<org>.<run>`` subject, else None."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] not in ("runs", "live"):
        return None
    return RunSubject(parts[1], parts[2])


# --- Producers, headers and de-duplication keys ------------------------------------------------


class Producer(enum.StrEnum):
    """Who stored a message: part of its ``Nats-Msg-Id`` (``<run>:<producer>:<attempt>:<n>``).

    The values are stored in Msg-Ids and compared across a rolling deploy (the de-duplication
    window spans one): never change one.
    """

    # Events agents post through the callback bridge.
    AGENT = "agent"
    # A run's terminal event, from the worker or a gateway for a workflow that closed without
    # one; always attempt 1 and n 0, so it is stored once whoever publishes it.
    TERMINAL = "terminal"
    # The ``queued`` event of a run started after its answer, and of a keyed run.
    GATEWAY = "gateway"
    GATEWAY_KEYED = "gateway-keyed"
    # The worker's activities.
    CREATE_SANDBOX = "create_sandbox"
    CALL_AGENT = "call_agent"
    SAVE_MESSAGE = "save_message"
    # A stage the workflow reached itself (``of_stage``).
    WORKFLOW_WAITING_FOR_AGENT = "workflow-waiting_for_agent"
    # The gateway's record of a run in its conversation's index (``conversation_subject``).
    CONVERSATION = "conversation"
    # ``benchmarks/fanout_probe.py``, publishing straight into the stream.
    PROBE = "probe"

    @classmethod
    def of_stage(cls, stage: Stage) -> Producer:
        """The producer of a stage the workflow publishes itself (one member per such stage)."""
        return cls(f"workflow-{stage}")


# The de-duplication key: a retried publish of the same message is stored once.
MSG_ID_HEADER = "Nats-Msg-Id"
# The events' types, comma-separated, kept on republish and direct get so relays frame events
# without decoding them.
EVENT_TYPE_HEADER = "Agentstream-Type"
# Lets the bridge see which attempt last wrote to a run without decoding a payload.
EVENT_ATTEMPT_HEADER = "Agentstream-Attempt"
# How many events a message holds, on a message of several only (``pack``).
EVENT_COUNT_HEADER = "Agentstream-Events"
# Set by JetStream on republished messages and direct-get replies.
_SEQUENCE = "Nats-Sequence"
_LAST_SEQUENCE = "Nats-Last-Sequence"
# When the message was stored, by the server's clock: RFC 3339 with nanoseconds.
_TIME_STAMP = "Nats-Time-Stamp"


def message_headers(
    run: str, producer: Producer, attempt: int, n: int, types: Sequence[str]
) -> dict[str, str]:
    """The headers of a producer's message holding events of ``types`` (the data :func:`pack`
    makes of them), the last of which is its event number ``n`` of ``attempt``."""
    headers = {
        MSG_ID_HEADER: f"{run}:{producer}:{attempt}:{n}",
        EVENT_TYPE_HEADER: ",".join(types),
        EVENT_ATTEMPT_HEADER: str(attempt),
    }
    if len(types) > 1:
        headers[EVENT_COUNT_HEADER] = str(len(types))
    return headers


def event_headers(event: BaseEvent, producer: Producer) -> dict[str, str]:
    """The headers of a message holding ``event`` alone."""
    return message_headers(event.run, producer, event.attempt, event.n, (event_type(event),))


class MsgIdParts(NamedTuple):
    """What a ``Nats-Msg-Id`` names besides the run."""

    producer: str
    attempt: int
    n: int


def msg_id_of(headers: Mapping[str, str]) -> MsgIdParts | None:
    """The producer, attempt and event number a stored message's ``Nats-Msg-Id`` names, or None
    if it has none of :func:`message_headers`' making."""
    parts = headers.get(MSG_ID_HEADER, "").rsplit(":", 3)
    if len(parts) != 4 or not (parts[2].isdecimal() and parts[3].isdecimal()):
        return None
    return MsgIdParts(parts[1], int(parts[2]), int(parts[3]))


# --- Several events in one message -------------------------------------------------------------
# One message per bridge post makes the post one publish and one acknowledgement, stored all or
# none and in order by construction, and lets JetStream's own ``Nats-Msg-Id`` de-duplication
# recognise a retried post. The message's data is a JSON array of the events,
# ``Agentstream-Events`` their count and ``Agentstream-Type`` their types, comma-separated, so a
# relay frames every event without decoding one. A message without ``Agentstream-Events`` holds a
# single event, as it is.

_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])


class MalformedEnvelope(ValueError):
    """A message whose headers and data disagree on the events it holds."""


def pack(datas: Sequence[bytes]) -> bytes:
    """The data of a message holding these encoded events, in order: a lone event as it is."""
    return datas[0] if len(datas) == 1 else b"[" + b",".join(datas) + b"]"


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


# --- Stored messages, read back ----------------------------------------------------------------


class StoredEvent(NamedTuple):
    """One stored event, as the gateway relays it.

    ``seq`` is the stream sequence of the message holding it and ``position`` its place there;
    ``prev_seq`` is the run's message stored before, as far as the message tells (a live one
    always does): 0 for the run's first, or where not told.
    """

    seq: int
    position: int
    prev_seq: int
    type: str
    data: bytes

    @property
    def id(self) -> int:
        """The event's ID (``schemas.event_ids``): what clients resume after."""
        return event_id(self.seq, self.position)

    @property
    def terminal(self) -> bool:
        """Whether this event ends the run's stream."""
        return self.type in TERMINAL_EVENT_TYPES


def stored_events(msg: Msg) -> list[StoredEvent]:
    """Every event of a stored message, in order: a ``live.>`` republish or a direct-get reply.

    Raises ``KeyError`` for a message without JetStream's headers, :class:`MalformedEnvelope`
    (a ``ValueError``) for one whose headers and data disagree.
    """
    headers = msg.headers or {}
    seq = int(headers[_SEQUENCE])
    prev_seq = int(headers.get(_LAST_SEQUENCE, 0))
    if EVENT_COUNT_HEADER not in headers:
        # Most messages hold one event: no list of pairs to build first.
        return [StoredEvent(seq, 0, prev_seq, headers.get(EVENT_TYPE_HEADER, "message"), msg.data)]
    return [
        StoredEvent(seq, position, prev_seq, type_, part)
        for position, (type_, part) in enumerate(unpack(headers, msg.data))
    ]


def stored_seq(headers: Mapping[str, str]) -> int:
    """The stream sequence of the stored message with these headers (a ``live.>`` republish or a
    direct-get reply); raises ``KeyError`` without JetStream's headers."""
    return int(headers[_SEQUENCE])


def previous_seq(headers: Mapping[str, str]) -> int:
    """The sequence of the message stored before it on the same subject, as a ``live.>``
    republish tells (0: none, or not told)."""
    return int(headers.get(_LAST_SEQUENCE, 0))


def stored_at(headers: Mapping[str, str]) -> float:
    """When JetStream stored the message with these headers (a ``live.>`` republish or a
    direct-get reply), in seconds since the epoch; 0.0 if they do not say."""
    stamp = headers.get(_TIME_STAMP)
    if not stamp:
        return 0.0
    try:
        # Python reads at most microseconds: the nanoseconds are cut to them.
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


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


def last_event_of(headers: Mapping[str, str]) -> LastEvent:
    """The newest event of the stored message with these headers (a direct-get reply)."""
    named = msg_id_of(headers)
    # A message of several events names all their types; the last one is the newest.
    types = headers.get(EVENT_TYPE_HEADER, "message")
    return LastEvent(
        seq=int(headers[_SEQUENCE]),
        type=types.rpartition(",")[2],
        attempt=int(headers.get(EVENT_ATTEMPT_HEADER, "0")),
        producer=named.producer if named else "",
        n=named.n if named else -1,
    )


# The batched direct get (``next_by_subj`` with ``batch``): nats.py has no call for it.
DIRECT_GET_API = f"$JS.API.DIRECT.GET.{STREAM_NAME}"


class DirectBatch(NamedTuple):
    """One answer of a batched direct get."""

    messages: list[Msg]
    # How many of the subject's messages lie beyond the batch.
    pending: int
    # The stream sequence of the batch's last message (0 if it is empty).
    last_seq: int


async def direct_get_batch(
    nc: NATS, subject: str, start: int, *, size: int, timeout: float
) -> DirectBatch:
    """Up to ``size`` of ``subject``'s stored messages from sequence ``start``, in order.

    No consumer is created, so thousands of readers at once cost the cluster only reads. Raises
    ``TimeoutError`` when the stream does not answer within ``timeout``.
    """
    replies: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_reply(msg: Msg) -> None:
        replies.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        request = {"seq": start, "next_by_subj": subject, "batch": size}
        await nc.publish(DIRECT_GET_API, json.dumps(request).encode(), reply=inbox)
        messages: list[Msg] = []
        while True:
            msg = await asyncio.wait_for(replies.get(), timeout)
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is None:
                messages.append(msg)
                continue
            last_seq = int((messages[-1].headers or {})[_SEQUENCE]) if messages else 0
            # 404: nothing (more) stored; 204, end of batch: what lies beyond decides whether to
            # read on.
            pending = 0 if status == "404" else int(headers.get("Nats-Num-Pending", "0"))
            return DirectBatch(messages, pending, last_seq)
    finally:
        await sub.unsubscribe()


# --- Storing ----------------------------------------------------------------------------------
# Every store is a request on the run's subject answered by JetStream's acknowledgement, so the
# caller learns the stored sequence, or why nothing was stored. A store may be conditional: on
# ``Nats-Expected-Last-Subject-Sequence`` JetStream checks and stores in one step, so a decision
# made from the run's last stored event ("the run has not finished", "no newer attempt took
# over") cannot be raced by another store landing between the check and the write.

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

# JetStream API error codes (nats-server errors.json).
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_DUPLICATE_IN_PROCESS = 10158


class OutgoingEvent(NamedTuple):
    """A message to store: one encoded event, or several packed together, and its headers
    (``message_headers``)."""

    data: bytes
    headers: dict[str, str]


class Stored(NamedTuple):
    """Where a message is stored: its stream sequence; ``duplicate`` if it was already stored
    (a retry, recognised by its ``Nats-Msg-Id``), ``seq`` then being the earlier store's."""

    seq: int
    duplicate: bool = False


class AppendError(Exception):
    """The events were not stored: the stream refused them."""


class LastSequenceMoved(AppendError):
    """Something was stored in the subject after the expected sequence: look again."""


class AppendBusy(AppendError):
    """The stream is busy or unreachable for now; the same store may be retried."""


async def publish(
    nc: NATS,
    org: str,
    run: str,
    message: OutgoingEvent,
    *,
    expected_last: int | None = None,
    timeout: float = 5.0,
) -> Stored:
    """Store ``message`` in the run's subject, after its message ``expected_last`` (0: none)
    when given, and return where it is stored once JetStream acknowledged it.

    Raises :class:`LastSequenceMoved` if the subject moved on past ``expected_last``,
    :class:`AppendBusy` when the store did not answer or asked to retry later, and
    :class:`AppendError` for any other refusal. Nothing is stored unless this returns.
    """
    return await _store(
        nc, run_subject(org, run), message, expected_last=expected_last, timeout=timeout
    )


async def publish_conversation_record(
    nc: NATS,
    org: str,
    conversation: str,
    run: str,
    data: bytes,
    *,
    expected_last: int,
    timeout: float = 5.0,
) -> Stored:
    """Store ``run``'s record (``data``) in ``org``'s ``conversation``'s index, only if the
    index's newest record is at sequence ``expected_last`` (0: the index is empty).

    Raises as :func:`publish` does; :class:`LastSequenceMoved` when another record got in first.
    """
    message = OutgoingEvent(data, conversation_record_headers(run))
    return await _store(
        nc,
        conversation_subject(org, conversation),
        message,
        expected_last=expected_last,
        timeout=timeout,
    )


async def _store(
    nc: NATS, subject: str, message: OutgoingEvent, *, expected_last: int | None, timeout: float
) -> Stored:
    headers = message.headers
    if expected_last is not None:
        headers = {**headers, EXPECTED_LAST_SUBJECT_SEQ: str(expected_last)}
    try:
        reply = await nc.request(subject, message.data, timeout=timeout, headers=headers)
    except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
        raise AppendBusy(f"no answer from the stream: {exc!r}") from None
    return _stored(reply.data, conditional=expected_last is not None)


async def publish_event(
    nc: NATS, org: str, event: BaseEvent, *, producer: Producer, timeout: float = 5.0
) -> int:
    """Store ``event`` alone in a message and return its stream sequence (:func:`publish`)."""
    message = OutgoingEvent(encode(event), event_headers(event, producer))
    return (await publish(nc, org, event.run, message, timeout=timeout)).seq


def _stored(answer: bytes, *, conditional: bool) -> Stored:
    """Where a publish acknowledgement says the message is stored, or the refusal it names."""
    try:
        ack = json.loads(answer)
    except ValueError:
        raise AppendError(f"unreadable acknowledgement {answer[:200]!r}") from None
    error = ack.get("error")
    if error is None:
        if ack.get("duplicate"):
            return Stored(int(ack.get("seq", 0)), duplicate=True)
        return Stored(int(ack["seq"]))
    code = error.get("err_code")
    description = error.get("description", "")
    # Another request is storing the same Nats-Msg-Id: a conditional store looks again; any
    # other store is answered as a duplicate once it retries.
    if code in _WRONG_LAST_SEQUENCE or (code == _DUPLICATE_IN_PROCESS and conditional):
        raise LastSequenceMoved(description)
    if error.get("code") == 503 or code == _DUPLICATE_IN_PROCESS:
        raise AppendBusy(description)
    raise AppendError(f"stream refused the events: {description} ({code})")
