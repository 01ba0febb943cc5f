"""SSE frames, encoded once per event and replica and shared by every client that sends them."""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.msg import Msg

from agentstream.event_publisher import EVENT_TYPE_HEADER
from agentstream.stored_event import StoredEvent
from schemas import TERMINAL_EVENT_TYPES

PING = b": ping\n\n"


class Frame(NamedTuple):
    """One event as its clients receive it: the merge keys and the bytes on the wire."""

    seq: int
    prev_seq: int
    terminal: bool
    # ``id: <seq>\nevent: <type>\ndata: <json>\n\n``
    wire: bytes


def _data(data: bytes) -> bytes:
    if b"\n" in data or b"\r" in data:
        # A line break would end the data field early: each line gets its own field.
        return b"\ndata: ".join(data.splitlines())
    return data


def _frame(seq: bytes, event_type: bytes, data: bytes) -> bytes:
    return b"id: %b\nevent: %b\ndata: %b\n\n" % (seq, event_type, _data(data))


def frame_of(event: StoredEvent) -> Frame:
    """The frame of an event read from the stream."""
    wire = _frame(str(event.seq).encode(), event.type.encode(), event.data)
    return Frame(event.seq, event.prev_seq, event.terminal, wire)


def live_frame(msg: Msg) -> Frame:
    """The frame of a ``live.>`` message, whose headers the stream's RePublish set.

    Raises ``KeyError`` or ``ValueError`` for a message without those headers.
    """
    headers = msg.headers or {}
    seq = headers["Nats-Sequence"]
    event_type = headers.get(EVENT_TYPE_HEADER, "message")
    wire = _frame(seq.encode(), event_type.encode(), msg.data)
    prev_seq = int(headers.get("Nats-Last-Sequence", "0"))
    return Frame(int(seq), prev_seq, event_type in TERMINAL_EVENT_TYPES, wire)


def opening(text: str, retry_ms: int) -> bytes:
    """A stream's first block: a comment, and how long clients wait before reconnecting."""
    return b": %b\nretry: %d\n\n" % (text.replace("\n", " ").encode(), retry_ms)


def message(event_type: str, data: bytes) -> bytes:
    """A frame without an ID (not from the stream, so not a resume point)."""
    return b"event: %b\ndata: %b\n\n" % (event_type.encode(), _data(data))
