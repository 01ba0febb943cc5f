"""One client's view of a run: stored history, then live events, merged by stream sequence.

The guarantee: every event after ``after``, in sequence order, once. Live events that overlap
history are dropped by sequence; a live event whose ``Nats-Last-Sequence`` is beyond what was
delivered reveals a hole, which is refilled from the stream before anything else is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from agentstream.run_history import HistoryReader
from agentstream.stored_event import StoredEvent
from gateway.live_hub import OVERFLOW, LiveHub, Watcher


class ClientTooSlow(Exception):
    """The client's live queue overflowed; it must reconnect and resume."""


async def stream_run(
    hub: LiveHub,
    history: HistoryReader,
    org: str,
    run: str,
    *,
    after: int,
    idle_check_s: float,
    cut_off: asyncio.Event,
    on_idle: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[StoredEvent]:
    """Every event of ``run`` with a sequence greater than ``after``, ending at the terminal one.

    ``cut_off`` is set if the client falls a whole queue behind; ``on_idle`` runs after each
    quiet spell of ``idle_check_s`` (to notice runs that ended without a terminal event).
    """
    async with hub.watch(org, run, cut_off) as watcher:
        last = after
        async for event in history.read(org, run, after=last):
            yield event
            last = event.seq
            if event.terminal:
                return
        while True:
            item = await _next_live(watcher, idle_check_s)
            if item is None and on_idle is not None:
                await on_idle()
            if item is OVERFLOW:
                raise ClientTooSlow(run)
            if isinstance(item, StoredEvent):
                if item.seq <= last:
                    continue
                if item.prev_seq <= last:
                    yield item
                    last = item.seq
                    if item.terminal:
                        return
                    continue
            # A hole, a resync order or a quiet spell: the stream is the truth, read what it has.
            async for event in history.read(org, run, after=last):
                yield event
                last = event.seq
                if event.terminal:
                    return


async def _next_live(watcher: Watcher, idle_check_s: float) -> object:
    """The next live item, or None after ``idle_check_s`` of silence."""
    try:
        return await asyncio.wait_for(watcher.get(), idle_check_s)
    except TimeoutError:
        return None
