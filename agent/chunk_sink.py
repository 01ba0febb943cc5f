"""Where the agent's events leave it: coalesced, numbered, and posted to the callback bridge.

Tokens are merged until ``flush_interval_s`` passes or ``max_chars`` accumulate; any other event
seals the text before it, so order is kept. One sender posts batches in order and retries a
failed post with the same events (same ``n``), on the next bridge when several are given, which
the bridge's de-duplication stores once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import msgspec

from agentstream.runtime import tracing
from schemas import BaseEvent, Token, encode

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class SinkFailed(Exception):
    """The bridge refused the events or stayed unreachable: the run cannot stream."""


class ChunkSink:
    """One attempt's outgoing events."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        urls: list[str],
        token: str,
        run: str,
        attempt: int,
        flush_interval_s: float = 0.025,
        max_chars: int = 512,
        max_batch: int = 200,
        max_pending: int = 5_000,
        retry_deadline_s: float = 30.0,
    ) -> None:
        self._http = http
        # The bridge in use; another one is tried after a failed post.
        self._urls = urls
        self._current = 0
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # The posts carry the current span's trace (the attempt's), taken once here, so the
        # bridge's publish spans join the run's trace at no cost per post.
        tracing.inject(self._headers)
        self._run = run
        self._attempt = attempt
        self._flush_interval_s = flush_interval_s
        self._max_chars = max_chars
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_deadline_s = retry_deadline_s
        self._text: list[str] = []
        self._text_len = 0
        self._pending: list[BaseEvent] = []
        self._next_n = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._error: SinkFailed | None = None
        self._sender: asyncio.Task[None] | None = None
        self.posted = 0

    async def __aenter__(self) -> ChunkSink:
        self._sender = asyncio.create_task(self._send_loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.close()
        elif self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, SinkFailed):
                await self._sender

    async def token(self, text: str) -> None:
        """Queue assistant text."""
        if not text:
            return
        await self._admit()
        self._text.append(text)
        self._text_len += len(text)
        if self._text_len >= self._max_chars:
            self._seal_text()
        self._wake.set()

    async def emit(self, event: BaseEvent) -> None:
        """Queue any other event; it follows all text queued before it."""
        await self._admit()
        self._seal_text()
        self._append(event)
        self._wake.set()

    async def close(self) -> None:
        """Send everything queued, then stop; raises :class:`SinkFailed` if that failed."""
        self._closing = True
        self._wake.set()
        if self._sender is not None:
            await self._sender
        if self._error is not None:
            raise self._error

    async def _admit(self) -> None:
        if self._error is not None:
            raise self._error
        # Backpressure: a bridge slower than the model holds the model back, not our memory.
        await self._room.wait()

    def _append(self, event: BaseEvent) -> None:
        self._pending.append(
            msgspec.structs.replace(event, run=self._run, attempt=self._attempt, n=self._next_n)
        )
        self._next_n += 1
        if len(self._pending) >= self._max_pending:
            self._room.clear()

    def _seal_text(self) -> None:
        if self._text:
            self._append(Token(run=self._run, text="".join(self._text)))
            self._text.clear()
            self._text_len = 0

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._text and not self._pending and not self._closing:
                    # Let more tokens join this one before it goes out.
                    await asyncio.sleep(self._flush_interval_s)
                self._seal_text()
                while self._pending:
                    batch = self._pending[: self._max_batch]
                    await self._post(batch)
                    del self._pending[: len(batch)]
                    self.posted += len(batch)
                    if len(self._pending) < self._max_pending:
                        self._room.set()
                if self._closing and not self._text:
                    return
        except SinkFailed as exc:
            self._error = exc
            self._room.set()
        except Exception as exc:
            # Anything else (an undecodable answer, a bug) must fail the run, not hang it.
            self._error = SinkFailed(f"posting events failed: {exc!r}")
            self._room.set()

    async def _post(self, batch: list[BaseEvent]) -> None:
        body = encode(batch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_deadline_s
        delay = 0.05
        while True:
            url = self._urls[self._current]
            try:
                response = await self._http.post(url, content=body, headers=self._headers)
            except httpx.TransportError as exc:
                problem = f"bridge {url} unreachable: {exc!r}"
            else:
                if response.status_code < 300:
                    return
                if response.status_code not in _RETRYABLE_STATUS:
                    raise SinkFailed(
                        f"bridge refused events: {response.status_code} {response.text[:300]}"
                    )
                problem = f"bridge {url} answered {response.status_code}"
            if loop.time() + delay > deadline:
                raise SinkFailed(problem)
            # The same events go to the next bridge: their Nats-Msg-Id stores them once.
            self._current = (self._current + 1) % len(self._urls)
            log.warning("run %s: %s; retrying in %.2fs", self._run, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
