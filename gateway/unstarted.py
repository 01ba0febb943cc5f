"""Runs a gateway accepted but whose workflow never started: their stream holds only ``queued``.

``POST /api/messages`` answers once the run's ``queued`` event is stored and starts the workflow
after (``gateway.run_starter``). A gateway that dies in between leaves a run Temporal never heard
of. Such a run is recognised by its stream alone, so any replica can end it: its last event is
the gateway's ``queued``, and that is older than the start grace, past which no start is still
being tried.

A keyed run (``Idempotency-Key``) is started before its answer, and a retry of the request
starts it if that failed: its ``queued`` names another producer, and it is never ended here.
"""

from __future__ import annotations

import contextlib
import time

from agentstream.runtime.nats_contract import LastEvent, Producer
from agentstream.runtime.run_history import HistoryReader
from schemas import Status, decode_event

# Producer names of the ``queued`` event of a run started after its answer, and of a keyed run.
QUEUED_PRODUCER = Producer.GATEWAY
KEYED_QUEUED_PRODUCER = Producer.GATEWAY_KEYED
# Longer than any start is tried (run_starter gives up at half of it), with room for clocks.
DEFAULT_START_GRACE_S = 30.0
START_FAILED_REASON = "could not start the run"

_STATUS_TYPE = "status"


def is_only_queued(last: LastEvent | None) -> bool:
    """Whether the run's newest event is the ``queued`` of a run started after its answer."""
    return last is not None and last.type == _STATUS_TYPE and last.producer == QUEUED_PRODUCER


async def queued_for_s(history: HistoryReader, org: str, run: str) -> float | None:
    """How long ago the gateway queued ``run`` (by the ``ts`` it stamped), if it did."""
    async with contextlib.aclosing(history.read(org, run, after=0)) as events:
        async for stored in events:
            first = decode_event(stored.data)
            if not isinstance(first, Status):
                return None
            return max(0.0, (time.time_ns() - first.ts) / 1e9)
    return None
