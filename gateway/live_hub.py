"""Live delivery on one replica: one core subscription per watched run, fanned out in-process.

No per-client JetStream consumer exists: a client costs a bounded queue here and nothing on the
NATS cluster. A client whose queue is full is cut off (it resumes with ``Last-Event-ID``) so it can
never slow the subscription or the other clients of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Final

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentstream.metrics import LIMIT_HITS, LIMIT_HITS_HELP, Metrics
from agentstream.stored_event import StoredEvent
from schemas import live_subject

log = logging.getLogger(__name__)


class _Signal:
    """A queue item that is not an event."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# The client's queue overflowed: it must disconnect and resume.
OVERFLOW: Final = _Signal("OVERFLOW")
# Messages may have been missed (NATS reconnect, slow subscription): re-read from the stream.
RESYNC: Final = _Signal("RESYNC")

LiveItem = StoredEvent | _Signal


class Watcher:
    """One client's view of a run's live events."""

    def __init__(
        self,
        run: str,
        queue_size: int,
        cut_off: asyncio.Event,
        on_overflow: Callable[[], None] = lambda: None,
    ) -> None:
        self.run = run
        self._on_overflow = on_overflow
        self._queue: asyncio.Queue[LiveItem] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        # Set on overflow, so the response can end even while blocked sending to the client.
        self.cut_off = cut_off

    def offer(self, item: LiveItem) -> None:
        """Hand an item to the client without ever waiting on it."""
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.cut_off.set()
            self._on_overflow()
            # Make room for the one item the client must see next: the order to go away.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(OVERFLOW)

    async def get(self) -> LiveItem:
        """The next live item, waiting for it."""
        return await self._queue.get()


class _RunChannel:
    """The subscription of one run and the clients watching it on this replica."""

    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()
        self.subscription: Subscription | None = None
        # Making the subscription (set by the hub as the channel is created): it belongs to the
        # channel, never to the client that happened to come first.
        self.opening: asyncio.Task[None]


class LiveHub:
    """All live subscriptions of this replica."""

    def __init__(self, nc: NATS, *, client_queue_size: int, metrics: Metrics | None = None) -> None:
        self._nc = nc
        self._metrics = metrics
        self._client_queue_size = client_queue_size
        self._channels: dict[str, _RunChannel] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _on_overflow(self) -> None:
        if self._metrics is not None:
            self._metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="client_queue")

    @property
    def watched_runs(self) -> int:
        """How many runs have at least one client watching on this replica."""
        return len(self._channels)

    @contextlib.asynccontextmanager
    async def watch(self, org: str, run: str, cut_off: asyncio.Event) -> AsyncIterator[Watcher]:
        """Register a client for ``run``; subscribes on the first and unsubscribes after the last.

        The subscription is in place (flushed to the server) before this yields, so a history
        read started afterwards overlaps live delivery instead of leaving a hole between them.
        A client may leave (or be cancelled) at any point, set-up included: the last one to
        leave always releases the subscription.
        """
        watcher = Watcher(run, self._client_queue_size, cut_off, self._on_overflow)
        subject = live_subject(org, run)
        channel = self._channels.get(subject)
        if channel is None:
            channel = self._channels[subject] = _RunChannel()
            channel.opening = self._spawn(self._open(subject, channel))
        channel.watchers.add(watcher)
        try:
            # Shielded: a client that leaves stops waiting, but the set-up goes on for the
            # others (and, if none is left, ends in the release below).
            await asyncio.shield(channel.opening)
            yield watcher
        finally:
            # No await here: under anyio (Starlette) a cancelled client is cancelled again at
            # every await, so clean-up that awaits can be cut short and leak.
            channel.watchers.discard(watcher)
            if not channel.watchers and self._channels.get(subject) is channel:
                del self._channels[subject]
                self._spawn(self._release(channel))

    async def settled(self) -> None:
        """Wait until every subscription set-up and release started so far has finished."""
        while self._background:
            await asyncio.wait(set(self._background))

    def _spawn(self, work: Coroutine[None, None, None]) -> asyncio.Task[None]:
        # The hub keeps a reference: the event loop holds tasks only weakly.
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _open(self, subject: str, channel: _RunChannel) -> None:
        channel.subscription = await self._subscribe(subject, channel)
        # Never cancelled (it runs as the hub's own task): nats-py resolves a flush's PONG
        # future without checking whether it was cancelled, and that error kills the
        # connection's read loop.
        await self._nc.flush()

    async def _release(self, channel: _RunChannel) -> None:
        # Whatever the set-up's outcome, once it has ended any subscription it made is known.
        await asyncio.wait({channel.opening})
        if not channel.opening.cancelled():
            # Its error was for its waiters to see; they may all have left before it came.
            channel.opening.exception()
        if channel.subscription is not None:
            with contextlib.suppress(Exception):
                await channel.subscription.unsubscribe()

    async def _subscribe(self, subject: str, channel: _RunChannel) -> Subscription:
        async def deliver(msg: Msg) -> None:
            try:
                event = StoredEvent.from_republished(msg)
            except (KeyError, ValueError):
                log.warning("live message without stream headers on %s", msg.subject)
                return
            for watcher in tuple(channel.watchers):
                watcher.offer(event)

        return await self._nc.subscribe(
            subject,
            cb=deliver,
            # A dropped message is detected by the next one's Nats-Last-Sequence and re-read.
            pending_msgs_limit=8192,
            pending_bytes_limit=32 * 1024 * 1024,
        )

    def resync_all(self) -> None:
        """Tell every client that live delivery may have a hole (after a NATS reconnect)."""
        for channel in self._channels.values():
            for watcher in tuple(channel.watchers):
                watcher.offer(RESYNC)
