"""One client's view of a run: stored history, then live events, merged by event ID.

The guarantee: every event after ``after``, in ID order, once. Live events that overlap history
are dropped by ID; a live event whose message's ``Nats-Last-Sequence`` is beyond the message last
delivered reveals a hole, which is refilled from the stream before anything else is sent.
Events come out in batches: whatever is ready at once, so a client's frames leave together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from agentstream.runtime.run_history import HistoryReader
from gateway.live_hub import OVERFLOW, LiveHub, do_nothing
from gateway.sse_frames import Frame, frame_of
from schemas import message_seq

# History is read 256 events a request; a client gets it in sends of this many.
_HISTORY_BATCH = 256


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
    tick_s: float | None = None,
    on_cut: Callable[[], object] = do_nothing,
    on_idle: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[list[Frame], None]:
    """Every event of ``run`` with an ID greater than ``after``, ending at the terminal one.

    Yields non-empty batches in order, and an empty one after each ``tick_s`` (default
    ``idle_check_s``) without events, so the caller can keep the connection alive.
    ``on_cut`` is called if the client falls a whole queue behind; ``on_idle`` runs after each
    quiet spell of ``idle_check_s`` (to notice runs that ended without a terminal event).
    """
    loop = asyncio.get_running_loop()
    tick = idle_check_s if tick_s is None else min(tick_s, idle_check_s)
    async with hub.watch(org, run, on_cut) as watcher:
        last = after
        async with contextlib.aclosing(_read_history(history, org, run, last)) as batches:
            async for batch in batches:
                yield batch
                last = batch[-1].id
                if batch[-1].terminal:
                    return
        quiet_since = loop.time()
        while True:
            items = await watcher.take(tick)
            refill = False
            if not items:
                if loop.time() - quiet_since < idle_check_s:
                    yield []
                    continue
                quiet_since = loop.time()
                if on_idle is not None:
                    await on_idle()
                refill = True
            else:
                quiet_since = loop.time()
            ready: list[Frame] = []
            for item in items:
                if item is OVERFLOW:
                    raise ClientTooSlow(run)
                if not isinstance(item, Frame) or item.prev_seq > message_seq(last):
                    # A hole or a resync order: the stream is the truth, read what it has.
                    refill = True
                    break
                if item.id <= last:
                    continue
                ready.append(item)
                last = item.id
                if item.terminal:
                    yield ready
                    return
            if ready:
                yield ready
            if refill:
                found = False
                async with contextlib.aclosing(_read_history(history, org, run, last)) as batches:
                    async for batch in batches:
                        found = True
                        yield batch
                        last = batch[-1].id
                        if batch[-1].terminal:
                            return
                if not found and not items:
                    yield []


async def _read_history(
    history: HistoryReader, org: str, run: str, after: int
) -> AsyncGenerator[list[Frame], None]:
    batch: list[Frame] = []
    async with contextlib.aclosing(history.read(org, run, after=after)) as events:
        async for event in events:
            batch.append(frame_of(event))
            if len(batch) == _HISTORY_BATCH or event.terminal:
                yield batch
                batch = []
    if batch:
        yield batch
