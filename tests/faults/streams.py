"""Reading runs the way a browser would, across replicas, and checking the run's own proof."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from agentstream.devstack.sse_client import SseMessage, read_stream
from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import start_run

TIMEOUT_S = 120.0

Key = tuple[str | None, str, str]


def keys(messages: list[SseMessage]) -> list[Key]:
    """What must match between two views of a run: IDs, types and payloads, in order."""
    return [(m.id, m.event, m.data) for m in messages]


class Client:
    """A browser-like client: reads a run, resumes with Last-Event-ID on another replica."""

    def __init__(self, http: httpx.AsyncClient, gateways: list[str], run: str) -> None:
        self.http = http
        self.gateways = gateways
        self.run = run
        self.messages: list[SseMessage] = []
        self.connections = 0
        self._seen = asyncio.Condition()

    @property
    def last_id(self) -> str | None:
        """The ID to resume after."""
        return self.messages[-1].id if self.messages else None

    async def read_once(self, gateway: str, *, stop_after: int | None = None) -> None:
        """One connection, until the server closes it, it breaks, or ``stop_after`` events."""
        self.connections += 1
        url = f"{gateway}/api/stream/{self.run}"
        with contextlib.suppress(httpx.TransportError):
            stream = read_stream(self.http, url, last_event_id=self.last_id)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    async with self._seen:
                        self.messages.append(message)
                        self._seen.notify_all()
                    if stop_after is not None and len(self.messages) >= stop_after:
                        return

    async def follow(self) -> list[SseMessage]:
        """Read to the terminal event, moving to the next replica whenever a connection ends."""
        async with asyncio.timeout(TIMEOUT_S):
            attempt = 0
            while not (self.messages and self.messages[-1].terminal):
                gateway = self.gateways[attempt % len(self.gateways)]
                attempt += 1
                try:
                    await self.read_once(gateway)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code < 500:
                        raise
                if not (self.messages and self.messages[-1].terminal):
                    # A browser's EventSource waits the server's retry hint before reconnecting.
                    await asyncio.sleep(0.2)
        return self.messages

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[asyncio.Task[list[SseMessage]]]:
        """Follow the run in the background while the block breaks things; await the task."""
        task = asyncio.create_task(self.follow())
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_for(self, predicate: Callable[[SseMessage], bool]) -> SseMessage:
        """The first received event matching ``predicate``, waiting for it."""
        async with asyncio.timeout(TIMEOUT_S), self._seen:
            await self._seen.wait_for(lambda: any(predicate(m) for m in self.messages))
            return next(m for m in self.messages if predicate(m))


async def read_while_a_gateway_fails(
    http: httpx.AsyncClient,
    stack: LocalStack,
    prompt: str,
    readers: list[str],
    gateway: str,
    fail: Callable[[], Awaitable[object]],
) -> Client:
    """A run of ``prompt`` started on the stack's first replica and followed on ``readers``
    while, once a token has come, ``fail`` stops the stack's ``gateway`` process (restarted
    afterwards, whatever happened): the client, holding what it read."""
    client = Client(http, readers, await start_run(http, stack.gateway_urls[0], prompt))
    try:
        async with client.following() as following:
            await client.wait_for(lambda m: m.event == "token")
            await fail()
            await following
    finally:
        await stack.restart(gateway)
    return client
