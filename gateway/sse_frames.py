"""SSE frames, encoded once per event and replica and shared by every client that sends them."""

from __future__ import annotations

from time import monotonic, time
from typing import NamedTuple

from nats.aio.msg import Msg

from agentstream.runtime.nats_contract import StoredEvent, stored_at, stored_events

PING = b": ping\n\n"


class Frame(NamedTuple):
    """One event as its clients receive it: the merge keys and the bytes on the wire."""

    # The event's ID, and the sequences of the message holding it and of the run's message
    # stored before that one (``StoredEvent``).
    id: int
    seq: int
    prev_seq: int
    terminal: bool
    # ``id: <id>\nevent: <type>\ndata: <json>\n\n``
    wire: bytes
    # A live event's times on this process's monotonic clock, for the latency histograms
    # (gateway.latency_metrics): when it was stored (by the NATS server's clock) and when this
    # replica took it off its subscription. 0.0 for an event read from history.
    stored: float = 0.0
    received: float = 0.0


def _data(data: bytes) -> bytes:
    if b"\n" in data or b"\r" in data:
        # A line break would end the data field early: each line gets its own field.
        return b"\ndata: ".join(data.splitlines())
    return data


def frame_of(event: StoredEvent, stored: float = 0.0, received: float = 0.0) -> Frame:
    """The frame of an event read from the stream; for a live one, when it was ``stored`` and
    ``received`` (time.monotonic)."""
    event_id = event.id
    wire = b"id: %d\nevent: %b\ndata: %b\n\n" % (event_id, event.type.encode(), _data(event.data))
    return Frame(event_id, event.seq, event.prev_seq, event.terminal, wire, stored, received)


def frame_data(frame: Frame) -> bytes:
    """The JSON event a frame of ``frame_of`` carries, for relays that send it in another form."""
    start = frame.wire.index(b"\ndata: ") + len(b"\ndata: ")
    return frame.wire[start:].removesuffix(b"\n\n").replace(b"\ndata: ", b"\n")


def live_frames(msg: Msg) -> list[Frame]:
    """The frames of a ``live.>`` message's events, whose headers the stream's RePublish set.

    Raises ``KeyError`` or ``ValueError`` for a message without those headers or whose events
    cannot be read.
    """
    received = monotonic()
    stamp = stored_at(msg.headers or {})
    # On the monotonic clock, no later than its receipt (the server's clock may run ahead).
    stored = received - max(0.0, time() - stamp) if stamp else 0.0
    return [frame_of(event, stored, received) for event in stored_events(msg)]


def opening(text: str, retry_ms: int) -> bytes:
    """A stream's first block: a comment, and how long clients wait before reconnecting."""
    return b": %b\nretry: %d\n\n" % (text.replace("\n", " ").encode(), retry_ms)


def message(event_type: str, data: bytes) -> bytes:
    """A frame without an ID (not from the stream, so not a resume point)."""
    return b"event: %b\ndata: %b\n\n" % (event_type.encode(), _data(data))
