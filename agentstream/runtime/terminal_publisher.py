"""Where a run's terminal event is born: counted, hashed, and stored after everything it covers.

The terminal event carries the completeness proof (``schemas.completeness``) over every event of
the run stored before it. It is stored on the condition that the run's last stored event is still
the last one hashed, so no event can slip in between the proof and the end of the run; a run that
moved on is read again. Whoever publishes it (the worker, or a gateway for a workflow that closed
without one) uses the same ``Nats-Msg-Id``, and a run that already ended is left as it is.
"""

from __future__ import annotations

import contextlib
import logging

import msgspec
from nats.aio.client import Client as NATS

from agentstream.runtime.nats_contract import (
    AppendBusy,
    LastSequenceMoved,
    OutgoingEvent,
    Producer,
    event_headers,
    publish,
)
from agentstream.runtime.run_history import HistoryReader
from schemas import CompletenessTally, TerminalEvent, encode, event_id

log = logging.getLogger(__name__)

# Each try reads only what was stored since the last one; producers of a finished attempt are
# refused by the bridge, so the run stops moving after a few tries at most.
_MAX_TRIES = 20


class TerminalNotStored(Exception):
    """The run kept moving (or the stream stayed busy) while its terminal event was proved."""


async def publish_terminal(
    nc: NATS, history: HistoryReader, org: str, event: TerminalEvent, *, timeout: float = 5.0
) -> int | None:
    """Store ``event`` as the run's last event, with its proof; its event ID, or None if the run
    had already ended (a retried or concurrent publish)."""
    tally = CompletenessTally()
    last_id = last_seq = 0
    for _ in range(_MAX_TRIES):
        async with contextlib.aclosing(history.read(org, event.run, after=last_id)) as events:
            async for stored in events:
                if stored.terminal:
                    return None
                tally.add(stored.id, stored.data)
                last_id, last_seq = stored.id, stored.seq
        proved = msgspec.structs.replace(event, completeness=tally.proof())
        outgoing = OutgoingEvent(encode(proved), event_headers(proved, Producer.TERMINAL))
        try:
            end = await publish(
                nc, org, event.run, outgoing, expected_last=last_seq, timeout=timeout
            )
        except (LastSequenceMoved, AppendBusy) as exc:
            log.info("run %s moved on while its end was proved (%s): reading on", event.run, exc)
            continue
        # A duplicate: a retried or concurrent publish of this very end stored it already.
        return None if end.duplicate else event_id(end.seq)
    raise TerminalNotStored(f"run {event.run} did not hold still for its terminal event")
