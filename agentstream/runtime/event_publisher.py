"""Where every event is born onto NATS: one publish path for the bridge and the worker."""

from __future__ import annotations

from typing import NamedTuple

from nats.js.client import JetStreamContext

from schemas import BaseEvent, encode, event_type, run_subject

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
