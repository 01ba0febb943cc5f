"""The worker's own events, stored even while stream RUNS elects a new leader.

When the NATS node leading ``RUNS`` dies, the other replicas elect a new leader; nats-server's
Raft election timeout is randomised between 4 and 9 s, and until then every store is refused
(no responders, or a 503). Failing the activity at once would spend one of its few attempts
(``save_message`` has five within about 8 s) on an outage that ends by itself, and a run whose
answer is already there could end ``failed``. So a store refused as busy is tried again here,
with the same ``Nats-Msg-Id``, which stores it once however many tries reach the stream.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS

from agentstream.runtime.nats_contract import AppendBusy, Producer, publish_event
from schemas import BaseEvent

log = logging.getLogger(__name__)

# Longer than the slowest election (9 s) with room to spare, shorter than the 30 s every
# activity that publishes is given to finish.
PATIENCE_S = 20.0
_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 1.0


async def publish_patiently(
    nc: NATS,
    org: str,
    event: BaseEvent,
    *,
    producer: Producer,
    patience_s: float = PATIENCE_S,
) -> int:
    """Store ``event`` (:func:`publish_event`) and return its stream sequence, trying again
    while the stream answers busy; :class:`AppendBusy` once ``patience_s`` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            return await publish_event(nc, org, event, producer=producer)
        except AppendBusy as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("run %s: stream busy (%s); storing again in %.1fs", event.run, exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY_S)
