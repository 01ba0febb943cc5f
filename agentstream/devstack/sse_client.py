"""A small SSE client for the CLI, the examples and the tests: parse, follow, resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from schemas import TERMINAL_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One server-sent event."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        """The data as JSON."""
        return json.loads(self.data)

    @property
    def terminal(self) -> bool:
        """Whether this event ends the run."""
        return self.event in TERMINAL_EVENT_TYPES


async def parse_sse(lines: AsyncIterator[str]) -> AsyncGenerator[SseMessage, None]:
    """Parse SSE lines into messages (comments and ``retry:`` are skipped)."""
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield SseMessage(event=event, data="\n".join(data), id=event_id)
            event, event_id = "message", None
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


async def read_stream(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None
) -> AsyncGenerator[SseMessage, None]:
    """One connection's events; raises ``httpx.HTTPStatusError`` on a non-200 answer.

    The connection stays open until the generator ends: close it (``contextlib.aclosing``) when
    leaving before the server ends the stream.
    """
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            response.raise_for_status()
        async with contextlib.aclosing(parse_sse(response.aiter_lines())) as messages:
            async for message in messages:
                yield message


async def follow_run(
    client: httpx.AsyncClient, url: str, *, max_reconnects: int = 20
) -> AsyncGenerator[SseMessage, None]:
    """Every event of a run up to its terminal one, reconnecting with ``Last-Event-ID``.

    Consume it under ``contextlib.aclosing`` when leaving early: its open connection is closed
    then, not whenever the event loop finalises the generator.
    """
    last_id: str | None = None
    reconnects = 0
    while True:
        try:
            # Closed at once on return: the connection is still open after the terminal event.
            async with contextlib.aclosing(
                read_stream(client, url, last_event_id=last_id)
            ) as messages:
                async for message in messages:
                    if message.id is not None:
                        last_id = message.id
                    yield message
                    if message.terminal:
                        return
        except httpx.TransportError:
            pass
        except httpx.HTTPStatusError as exc:
            # A replica whose backing services restart answers 503: try again. 4xx is final.
            if exc.response.status_code < 500:
                raise
        reconnects += 1
        if reconnects > max_reconnects:
            raise ConnectionError(f"stream {url} ended {reconnects} times without a terminal event")
        # The server's retry hint is 2 s; a short pause avoids hammering a restarting replica.
        await asyncio.sleep(min(0.2 * reconnects, 2.0))
