"""The SSE response: pre-encoded chunks written as they come, ended from outside when needed.

Each connection costs its request task and one task listening for the client leaving. A stream
ends when its chunks end, when the client leaves, when ``cut()`` is called (its client fell a
whole queue behind), when a send outlasts the send timeout, or a grace period after the process
is told to stop (clients then resume elsewhere with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agentstream.serve import call_on_stop_signal

log = logging.getLogger(__name__)

# The last chunk of a stream that ends in order; a blocked client does not get longer.
_END_TIMEOUT_S = 1.0

ChunkSource = Callable[[Callable[[], None]], AsyncGenerator[bytes]]


class _OpenStreams:
    """The streams open on one event loop, ended a grace period after a stop signal."""

    def __init__(self) -> None:
        self.streams: set[SseResponse] = set()
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        for stream in tuple(self.streams):
            stream.end_after_grace()


_open: dict[asyncio.AbstractEventLoop, _OpenStreams] = {}


def _open_streams() -> _OpenStreams:
    loop = asyncio.get_running_loop()
    streams = _open.get(loop)
    if streams is None:
        streams = _open[loop] = _OpenStreams()
        call_on_stop_signal(streams.stop)
    return streams


class SseResponse(Response):
    """A ``text/event-stream`` response whose chunks arrive already encoded.

    ``source`` is called with this response's ``cut`` and returns the chunks; each chunk is
    one ASGI send, so frames joined into a chunk leave in one write.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: ChunkSource,
        *,
        send_timeout_s: float,
        shutdown_grace_s: float,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = 200
        self.background = background
        self.init_headers(
            {"X-Accel-Buffering": "no", "Cache-Control": "no-store", **(headers or {})}
        )
        self._chunks = source(self.cut)
        self._send_timeout_s = send_timeout_s
        self._grace_s = shutdown_grace_s
        # The task writing the stream, while it may be ended from outside.
        self._task: asyncio.Task[object] | None = None
        self._end: asyncio.TimerHandle | None = None
        self._cancels = 0
        self._cut = False

    def cut(self) -> None:
        """End the stream now and drop the connection (the client resumes from its last ID)."""
        self._cut = True
        self._end_at(0.0)

    def end_after_grace(self) -> None:
        """End the stream once the shutdown grace period has passed."""
        self._end_at(asyncio.get_running_loop().time() + self._grace_s)

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        if scope.get("method") == "HEAD":
            # A HEAD never streams: it would never end.
            await self._chunks.aclose()
            await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if self.background is not None:
                await self.background()
            return
        streams = _open_streams()
        listening = asyncio.create_task(self._end_when_client_leaves(receive))
        streams.streams.add(self)
        ended_in_order = False
        self._task = asyncio.current_task()
        if streams.stopping:
            self.end_after_grace()
        try:
            await send(start)
            await self._send_chunks(send)
            ended_in_order = True
        except asyncio.CancelledError:
            # Ended from outside by this response (a cancellation of its own making); any
            # other cancellation goes on.
            if not self._uncancel_own():
                raise
        except TimeoutError:
            pass  # a send outlasted its timeout: already cut
        finally:
            self._task = None
            if self._end is not None:
                self._end.cancel()
            streams.streams.discard(self)
            listening.cancel()
            # Its clean-up (the client's place in the live hub) runs now, not at garbage time.
            await self._chunks.aclose()
        if not self._cut:
            # A client that fell behind is dropped without its last chunk: uvicorn then closes
            # the connection. Others get a proper end, and keep-alive if it ended in order.
            async with asyncio.timeout(None if ended_in_order else _END_TIMEOUT_S):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()

    def _uncancel_own(self) -> bool:
        """Withdraw this response's cancellations; whether the task is left uncancelled."""
        task = self._task
        if task is None or not self._cancels:
            return False
        remaining = task.cancelling()
        for _ in range(self._cancels):
            remaining = task.uncancel()
        self._cancels = 0
        return remaining == 0

    async def _send_chunks(self, send: Send) -> None:
        timeout_s = self._send_timeout_s
        async for chunk in self._chunks:
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            try:
                async with asyncio.timeout(timeout_s):
                    await send(message)
            except TimeoutError:
                log.info("SSE send outlasted %.1f s, connection dropped", timeout_s)
                self.cut()
                raise

    async def _end_when_client_leaves(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._end_at(0.0)
                return
