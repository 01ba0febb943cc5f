"""A stream whose client stops taking data is dropped once a send outlasts the send timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.types import Message

from gateway.sse_frames import Frame
from gateway.sse_response import SseStream


async def test_a_send_that_outlasts_the_timeout_drops_the_client() -> None:
    sent: list[Message] = []
    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"stuck":
            # The client's window is full: this send never completes.
            blocked.set()
            await asyncio.Event().wait()

    async def receive() -> Message:
        # The client never leaves: only the watchdog can end the stream.
        await asyncio.Event().wait()
        raise AssertionError

    async def batches() -> AsyncIterator[list[Frame]]:
        yield [Frame(1000, 1, 0, False, b"stuck")]
        raise AssertionError("no batch after the stuck one")

    stream = SseStream("run_stuck", shutdown_grace_s=5.0)
    async with asyncio.timeout(10):
        await stream.serve(receive, send, b": hi\n\n", batches(), ping_s=60.0, send_timeout_s=0.2)
    assert blocked.is_set()
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 2
    assert not any(m.get("more_body") is False for m in sent), "cut, not ended in order"
