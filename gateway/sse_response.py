"""The SSE response, with a way for the gateway to end it from outside."""

from __future__ import annotations

import asyncio

from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send


class CuttableEventSourceResponse(EventSourceResponse):
    """An ``EventSourceResponse`` that ends as if the client left once ``cut_off`` is set.

    A client too slow for its queue may leave the response blocked inside a send; ending it
    through the ASGI ``receive`` channel stops that send too, so the client reconnects and
    resumes instead of holding memory and a stale position.
    """

    def __init__(self, *args: object, cut_off: asyncio.Event, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._cut_off = cut_off

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut_off = self._cut_off

        async def receive_or_cut_off() -> Message:
            received = asyncio.ensure_future(receive())
            cut = asyncio.ensure_future(cut_off.wait())
            try:
                await asyncio.wait({received, cut}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cut.cancel()
                if not received.done():
                    received.cancel()
            if received.done() and not received.cancelled():
                return received.result()
            return {"type": "http.disconnect"}

        await super().__call__(scope, receive_or_cut_off, send)
