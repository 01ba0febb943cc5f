"""Event IDs: where an event sits in its run's stream, as clients see it in SSE ``id:`` lines.

A stored message holds one event, or (a callback-bridge post) several, in order. An event's ID is
``seq * EVENTS_PER_MESSAGE + index``: ``seq`` is the message's stream sequence, ``index`` the
event's place in it. IDs grow with stream order, so ``Last-Event-ID`` resumes exactly after an
event even in the middle of a message, and ``12003`` reads as "message 12, event 3".
"""

from __future__ import annotations

# The most events one stored message may hold.
EVENTS_PER_MESSAGE = 1000


def event_id(seq: int, index: int = 0) -> int:
    """The ID of event ``index`` of the message stored at stream sequence ``seq``."""
    return seq * EVENTS_PER_MESSAGE + index


def message_seq(event_id: int) -> int:
    """The stream sequence of the message that holds the event ``event_id`` (0 for none)."""
    return event_id // EVENTS_PER_MESSAGE
