"""A run's event as the gateway relays it: stream sequence, type and the JSON payload."""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.msg import Msg

from agentstream.event_publisher import EVENT_TYPE_HEADER
from schemas import TERMINAL_EVENT_TYPES


class StoredEvent(NamedTuple):
    """One stored event; ``prev_seq`` is the run's previous sequence (0 for its first event)."""

    seq: int
    prev_seq: int
    type: str
    data: bytes
    # The org its subject names (``runs.<org>.<run>``); empty where not needed.
    org: str = ""

    @property
    def terminal(self) -> bool:
        """Whether this event ends the run's stream."""
        return self.type in TERMINAL_EVENT_TYPES

    @classmethod
    def from_republished(cls, msg: Msg) -> StoredEvent:
        """Build from a ``live.>`` message, whose headers the stream's RePublish set."""
        headers = msg.headers or {}
        return cls(
            seq=int(headers["Nats-Sequence"]),
            prev_seq=int(headers.get("Nats-Last-Sequence", "0")),
            type=headers.get(EVENT_TYPE_HEADER, "message"),
            data=msg.data,
        )
