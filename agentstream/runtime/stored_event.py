"""A run's event as the gateway relays it: where it is stored, its type and its JSON payload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from agentstream.runtime.event_envelope import unpack
from schemas import TERMINAL_EVENT_TYPES, event_id


class StoredEvent(NamedTuple):
    """One stored event.

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

    Raises ``agentstream.runtime.event_envelope.MalformedEnvelope`` for a message whose headers and
    data disagree.
    """
    return [
        StoredEvent(seq, position, prev_seq, type_, part, org)
        for position, (type_, part) in enumerate(unpack(headers, data))
    ]
