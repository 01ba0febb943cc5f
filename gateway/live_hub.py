"""Live delivery on one replica: one core subscription per watched run, fanned out in-process.

No per-client JetStream consumer exists: a client costs a bounded queue here and nothing on the
NATS cluster. A client whose queue is full is cut off (it resumes with ``Last-Event-ID``) so it can
never slow the subscription or the other clients of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from time import monotonic
from typing import Final

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentstream.runtime.metrics import LIMIT_HITS, LIMIT_HITS_HELP, Metrics
from agentstream.runtime.nats_contract import live_subject
from gateway.latency_metrics import LiveTimings, live_timings
from gateway.sse_frames import Frame, live_frames

log = logging.getLogger(__name__)


class _Signal:
    """A queue item that is not an event."""

    # As a history frame's: no live event's times to count.
    stored = received = 0.0

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# The client's queue overflowed: it must disconnect and resume.
OVERFLOW: Final = _Signal("OVERFLOW")
# Messages may have been missed (NATS reconnect, slow subscription): re-read from the stream.
RESYNC: Final = _Signal("RESYNC")

LiveItem = Frame | _Signal

# One batch in this many of each client has its times counted (its first, then every eighth):
# the same quantiles, at an eighth of the cost on the fan-out path.
_TIMED_EVERY = 8


def do_nothing() -> None:
    """The default for callbacks nobody needs."""


class Watcher:
    """One client's view of a run's live events: a bounded list its frames are appended to.

    An event costs each client one append here; the client takes everything pending at once,
    so frames that arrive together leave together.
    """

    __slots__ = (
        "_items",
        "_limit",
        "_on_cut",
        "_on_overflow",
        "_takes",
        "_timings",
        "_waiter",
        "overflowed",
        "run",
    )

    def __init__(
        self,
        run: str,
        queue_size: int,
        on_cut: Callable[[], object] = do_nothing,
        on_overflow: Callable[[], None] = do_nothing,
        timings: LiveTimings | None = None,
    ) -> None:
        self.run = run
        self._limit = queue_size
        self._items: list[LiveItem] = []
        # Where the wait and the lag of a batch's oldest live event are counted, and how many
        # batches were taken (for the sampling).
        self._timings = timings
        self._takes = 0
        self._waiter: asyncio.Future[None] | None = None
        # Called on overflow, so the response can end even while blocked sending to the client.
        self._on_cut = on_cut
        self._on_overflow = on_overflow
        self.overflowed = False

    def offer(self, item: LiveItem) -> None:
        """Hand an item to the client without ever waiting on it."""
        self.offer_all((item,))

    def offer_all(self, items: Sequence[LiveItem]) -> None:
        """Hand items to the client, in order, without ever waiting on it."""
        if self.overflowed:
            return
        if len(self._items) + len(items) > self._limit:
            self.overflowed = True
            # The one item the client must see next: the order to go away.
            self._items = [OVERFLOW]
            self._on_overflow()
            self._on_cut()
        else:
            self._items.extend(items)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self, timeout_s: float) -> list[LiveItem]:
        """Every pending item, oldest first, waiting up to ``timeout_s`` for one ([] if none)."""
        if not self._items:
            await self._wait(timeout_s)
        items, self._items = self._items, []
        timings = self._timings
        if items and timings is not None:
            takes = self._takes
            self._takes = takes + 1
            if takes % _TIMED_EVERY == 0 and items[0].received:
                # The oldest item's times: its client writes the batch right away.
                now = monotonic()
                timings.queue_wait.observe(now - items[0].received)
                if items[0].stored:
                    timings.delivery_lag.observe(now - items[0].stored)
        return items

    async def get(self) -> LiveItem:
        """The next live item, waiting for it."""
        while not self._items:
            await self._wait(3600.0)
        return self._items.pop(0)

    async def _wait(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        # A timer, not asyncio.wait_for: on 3.11 that makes a task for every wait.
        timer = loop.call_later(timeout_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _RunChannel:
    """The subscription of one run and the clients watching it on this replica."""

    __slots__ = ("opening", "subscription", "watchers")

    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()
        self.subscription: Subscription | None = None
        # Making the subscription (set by the hub as the channel is created): it belongs to the
        # channel, never to the client that happened to come first. None once it succeeded.
        self.opening: asyncio.Task[None] | None = None


# Messages received and not yet delivered, over all runs: past it nats-py drops a message (and
# logs a slow consumer); the run's next message reveals the hole and its clients re-read it.
_PENDING_MSGS = 65_536

Deliver = Callable[[Msg], Awaitable[None]]


class _SharedDelivery:
    """Delivers the messages of all of a hub's subscriptions from one queue, in one task.

    nats-py gives every subscription with a callback a queue and a task of its own: ~6 KB a
    run (tracemalloc), more than the clients watching it cost. A subscription is made as usual,
    so nats-py still owns it (replays it after a reconnect, drains and unsubscribes it), then
    adopted: its messages go to this queue and its own task is stopped. The task runs while
    the hub has subscriptions.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=_PENDING_MSGS)
        self._routes: dict[int, tuple[Subscription, Deliver]] = {}
        self._task: asyncio.Task[None] | None = None

    def adopt(self, subscription: Subscription, deliver: Deliver) -> None:
        """Deliver ``subscription``'s messages with ``deliver``, from now on in the shared task."""
        own = subscription._pending_queue
        if subscription._wait_for_msgs_task is not None:
            # Waiting for its first message, at most: it has no other await.
            subscription._wait_for_msgs_task.cancel()
            subscription._wait_for_msgs_task = None
        subscription._pending_queue = self._queue
        # What arrived while it was being made goes first.
        while not own.empty():
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(own.get_nowait())
        self._routes[subscription._id] = (subscription, deliver)
        if self._task is None:
            # It delivers every run's messages: it must not log as the run that started it.
            self._task = asyncio.create_task(self._deliver_all(), context=contextvars.Context())

    def forget(self, subscription: Subscription) -> None:
        """Deliver nothing more of ``subscription`` (it is about to be unsubscribed)."""
        self._routes.pop(subscription._id, None)
        if not self._routes and self._task is not None:
            self._task.cancel()
            self._task = None
            # Nothing left to deliver them to; a drain waiting on the queue must not wait.
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()

    async def _deliver_all(self) -> None:
        queue = self._queue
        while True:
            msg = await queue.get()
            try:
                route = self._routes.get(msg.sid)
                if route is not None:
                    subscription, deliver = route
                    # nats-py counts what it queued against the subscription's byte limit.
                    subscription._pending_size -= len(msg.data)
                    await deliver(msg)
            except Exception:
                log.exception("live delivery failed on %s", msg.subject)
            finally:
                queue.task_done()


class LiveHub:
    """All live subscriptions of this replica."""

    def __init__(self, nc: NATS, *, client_queue_size: int, metrics: Metrics | None = None) -> None:
        self._nc = nc
        self._metrics = metrics
        self._timings = live_timings(metrics) if metrics is not None else None
        self._client_queue_size = client_queue_size
        self._channels: dict[str, _RunChannel] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._delivery = _SharedDelivery()

    def _on_overflow(self) -> None:
        if self._metrics is not None:
            self._metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="client_queue")

    @property
    def watched_runs(self) -> int:
        """How many runs have at least one client watching on this replica."""
        return len(self._channels)

    @contextlib.asynccontextmanager
    async def watch(
        self, org: str, run: str, on_cut: Callable[[], object] = do_nothing
    ) -> AsyncIterator[Watcher]:
        """Register a client for ``run``; subscribes on the first and unsubscribes after the last.

        The subscription is in place (flushed to the server) before this yields, so a history
        read started afterwards overlaps live delivery instead of leaving a hole between them.
        A client may leave (or be cancelled) at any point, set-up included: the last one to
        leave always releases the subscription. ``on_cut`` is called if the client falls a
        whole queue behind.
        """
        watcher = Watcher(run, self._client_queue_size, on_cut, self._on_overflow, self._timings)
        subject = live_subject(org, run)
        channel = self._channels.get(subject)
        if channel is None:
            channel = self._channels[subject] = _RunChannel()
            channel.opening = self._spawn(self._open(subject, channel))
        channel.watchers.add(watcher)
        try:
            if channel.opening is not None:
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
        # Done: the channel keeps no finished task for as long as the run is watched.
        channel.opening = None

    async def _release(self, channel: _RunChannel) -> None:
        # Whatever the set-up's outcome, once it has ended any subscription it made is known.
        opening = channel.opening
        if opening is not None:
            await asyncio.wait({opening})
            if not opening.cancelled():
                # Its error was for its waiters to see; they may all have left before it came.
                opening.exception()
        if channel.subscription is not None:
            self._delivery.forget(channel.subscription)
            with contextlib.suppress(Exception):
                await channel.subscription.unsubscribe()

    async def _subscribe(self, subject: str, channel: _RunChannel) -> Subscription:
        async def deliver(msg: Msg) -> None:
            try:
                # Encoded here, once, for every client of the run on this replica.
                frames = live_frames(msg)
            except (KeyError, ValueError):
                log.warning("unreadable live message on %s", msg.subject)
                return
            for watcher in tuple(channel.watchers):
                watcher.offer_all(frames)

        subscription = await self._nc.subscribe(
            subject,
            cb=deliver,
            # A dropped message is detected by the next one's Nats-Last-Sequence and re-read.
            pending_bytes_limit=32 * 1024 * 1024,
        )
        self._delivery.adopt(subscription, deliver)
        return subscription

    def resync_all(self) -> None:
        """Tell every client that live delivery may have a hole (after a NATS reconnect)."""
        for channel in self._channels.values():
            for watcher in tuple(channel.watchers):
                watcher.offer(RESYNC)
