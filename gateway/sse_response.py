"""The SSE response of a run on a raw ASGI connection, ended from outside when needed.

A connection costs its request task, which writes the stream, and one task waiting on
``receive``: uvicorn tells of a client leaving only there. A stream ends when its batches end,
when the client leaves, when ``too_slow()`` is called (its client fell a whole queue behind),
when a send outlasts the send timeout, or a grace period after the process is told to stop
(clients then resume elsewhere with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.types import Message, Receive, Send

from agentstream.runtime.serve import call_on_stop_signal
from gateway.loop_local import loop_local
from gateway.run_stream import ClientTooSlow
from gateway.sse_frames import PING, Frame

log = logging.getLogger(__name__)

# The last chunk of a stream that ends in order; a blocked client does not get longer.
_END_TIMEOUT_S = 1.0
# How often the sends under way are checked against their deadline.
_SEND_CHECK_S = 1.0

_HEADERS = (
    (b"x-accel-buffering", b"no"),
    (b"cache-control", b"no-store"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)


class _OpenStreams:
    """The streams open on one event loop, ended a grace period after a stop signal.

    One watchdog checks every stream's send under way against its deadline: a timer per send
    (``asyncio.timeout``) cost a tenth of the gateway's work per delivery in fan-out.
    """

    def __init__(self) -> None:
        self.streams: set[SseStream] = set()
        self.stopping = False
        self._watchdog: asyncio.Task[None] | None = None

    def add(self, stream: SseStream) -> None:
        self.streams.add(stream)
        if self._watchdog is None:
            # It watches every stream: it must not log as the run whose stream started it.
            self._watchdog = asyncio.create_task(self._watch_sends(), context=contextvars.Context())

    async def _watch_sends(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.streams:
                await asyncio.sleep(_SEND_CHECK_S)
                now = loop.time()
                for stream in tuple(self.streams):
                    stream.check_send(now)
        finally:
            self._watchdog = None

    def stop(self) -> None:
        self.stopping = True
        for stream in tuple(self.streams):
            stream.end_after_grace()


def _watched_streams() -> _OpenStreams:
    streams = _OpenStreams()
    call_on_stop_signal(streams.stop)
    return streams


_open_streams = loop_local(_watched_streams)


class SseStream:
    """One client's ``text/event-stream`` response: its first block, then each batch of frames
    joined into one write, and a keepalive comment after ``ping_s`` without one.

    Created before the batches, so that their source can be handed ``too_slow``. ``headers``
    are sent besides the usual ones (a protocol's own, e.g. the AI SDK's version header).
    """

    __slots__ = (
        "_cancels",
        "_cut",
        "_end",
        "_grace_s",
        "_headers",
        "_listening",
        "_receive",
        "_send_deadline",
        "_send_timeout_s",
        "_task",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        shutdown_grace_s: float,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        # What the stream is of, for the logs.
        self.name = name
        self._headers = _HEADERS + headers
        self._grace_s = shutdown_grace_s
        # The task writing the stream, while it may be ended from outside.
        self._task: asyncio.Task[object] | None = None
        self._end: asyncio.TimerHandle | None = None
        self._cancels = 0
        self._cut = False
        self._receive: Receive | None = None
        self._listening: asyncio.Future[Message] | None = None
        # When the send under way must have finished (loop time); None between sends.
        self._send_deadline: float | None = None
        self._send_timeout_s = 0.0

    def too_slow(self) -> None:
        """Drop the client, which fell a whole queue behind: it resumes from its last ID."""
        log.info("client of %s too slow, disconnected to resume", self.name)
        self._cut_now()

    def end_after_grace(self) -> None:
        """End the stream once the shutdown grace period has passed."""
        self._end_at(asyncio.get_running_loop().time() + self._grace_s)

    async def serve(
        self,
        receive: Receive,
        send: Send,
        first: bytes,
        batches: AsyncIterator[list[Frame]] | None,
        *,
        ping_s: float,
        send_timeout_s: float,
    ) -> None:
        """Write the response: ``first``, then every batch until they end or the stream is
        ended; ``batches`` (a generator) is closed on the way out, however it ends."""
        loop = asyncio.get_running_loop()
        streams = _open_streams()
        self._send_timeout_s = send_timeout_s
        self._task = asyncio.current_task()
        streams.add(self)
        self._receive = receive
        self._listen()
        if streams.stopping:
            self.end_after_grace()
        ended_in_order = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            await self._write(send, first, loop)
            if batches is not None:
                sent_at = loop.time()
                async for batch in batches:
                    if batch:
                        # Frames were encoded once for every client: here they are only joined.
                        chunk = b"".join([frame.wire for frame in batch])
                    elif loop.time() - sent_at < ping_s:
                        continue
                    else:
                        chunk = PING
                    await self._write(send, chunk, loop)
                    sent_at = loop.time()
            ended_in_order = True
        except asyncio.CancelledError:
            # Ended from outside by this stream (a cancellation of its own making); any other
            # cancellation goes on.
            if not self._uncancel_own():
                raise
        except ClientTooSlow:
            pass  # already cut
        finally:
            self._task = None
            if self._end is not None:
                self._end.cancel()
            streams.streams.discard(self)
            if self._listening is not None:
                self._listening.cancel()
            if isinstance(batches, AsyncGenerator):
                # Its clean-up (the client's place in the live hub) runs now, not at garbage time.
                await batches.aclose()
        if not self._cut:
            # A client that fell behind is dropped without its last chunk: uvicorn then closes
            # the connection. Others get a proper end, and keep-alive if it ended in order.
            async with asyncio.timeout(None if ended_in_order else _END_TIMEOUT_S):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send, chunk: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self._send_deadline = loop.time() + self._send_timeout_s
        try:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._send_deadline = None

    def check_send(self, now: float) -> None:
        """Drop the client if the send under way has outlasted the send timeout at ``now``."""
        if self._send_deadline is not None and now > self._send_deadline and not self._cut:
            log.info(
                "SSE send of %s outlasted %.1f s, connection dropped",
                self.name,
                self._send_timeout_s,
            )
            self._cut_now()

    def _listen(self) -> None:
        # A bare task on ``receive``, renewed while the request's own messages (its body, if
        # any) come in: the wait for the client to leave holds no frame of this stream's.
        assert self._receive is not None
        self._listening = asyncio.ensure_future(self._receive())
        self._listening.add_done_callback(self._received)

    def _received(self, listening: asyncio.Future[Message]) -> None:
        if listening.cancelled():
            return
        if listening.exception() is None and listening.result()["type"] == "http.request":
            if self._task is not None:
                self._listen()
            return
        self._listening = None
        self._end_at(0.0)

    def _cut_now(self) -> None:
        self._cut = True
        self._end_at(0.0)

    def _end_at(self, when: float) -> None:
        if self._task is None or (self._end is not None and self._end.when() <= when):
            return
        if self._end is not None:
            self._end.cancel()
        self._end = asyncio.get_running_loop().call_at(when, self._end_now)

    def _end_now(self) -> None:
        if self._task is None:
            return
        self._cancels += 1
        self._task.cancel()
        # Again until it has ended: library code can swallow a cancellation (3.11's wait_for
        # does when what it waited for finished at the same moment), which must not leave the
        # stream open and its client's slot taken.
        self._end = asyncio.get_running_loop().call_later(0.1, self._end_now)

    def _uncancel_own(self) -> bool:
        """Withdraw this stream's cancellations; whether the task is left uncancelled."""
        task = self._task
        if task is None or not self._cancels:
            return False
        remaining = task.cancelling()
        for _ in range(self._cancels):
            remaining = task.uncancel()
        self._cancels = 0
        return remaining == 0
