"""agent.chunk_sink.ChunkSink against a real in-process ASGI bridge (httpx.ASGITransport)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.chunk_sink import ChunkSink, SinkFailed
from schemas import BaseEvent, Error, Stage, Status, Token, ToolEnd, ToolStart, decode_event_batch

URL = "http://bridge/api/stream/run_sink/chunk"
RUN = "run_sink"
ATTEMPT = 2


class Bridge:
    """A tiny callback bridge: records every post, can answer the first N with a status."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, list[BaseEvent]]] = []  # (answered status, events)
        self.headers: list[dict[str, str]] = []
        self.fail_first = 0
        self.fail_status = 503
        self.gate = asyncio.Event()
        self.gate.set()
        self.received = asyncio.Event()
        self.app = Starlette(
            routes=[Route("/api/stream/{run}/chunk", self.chunk, methods=["POST"])]
        )

    async def chunk(self, request: Request) -> Response:
        events = decode_event_batch(await request.body())
        self.headers.append(dict(request.headers))
        self.received.set()
        await self.gate.wait()
        status = self.fail_status if len(self.posts) < self.fail_first else 200
        self.posts.append((status, events))
        return JSONResponse({"ok": status == 200}, status_code=status)

    @property
    def stored(self) -> list[BaseEvent]:
        """Events of the accepted posts, in order."""
        return [e for status, events in self.posts if status == 200 for e in events]


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fault injector: the first ``fail_first`` requests fail with ConnectError."""

    def __init__(self, inner: httpx.AsyncBaseTransport, fail_first: int) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.failed_bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if len(self.failed_bodies) < self.fail_first:
            self.failed_bodies.append(await request.aread())
            raise httpx.ConnectError("injected: connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def bridge() -> Bridge:
    return Bridge()


@pytest.fixture
async def http(bridge: Bridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bridge.app)) as client:
        yield client


def _sink(http: httpx.AsyncClient, **kwargs: Any) -> ChunkSink:
    options: dict[str, Any] = {"flush_interval_s": 0.01, "retry_deadline_s": 5.0}
    options.update(kwargs)
    urls = options.pop("urls", [URL])
    return ChunkSink(http, urls=urls, token="tok-123", run=RUN, attempt=ATTEMPT, **options)


def _numbers(events: list[BaseEvent]) -> list[int]:
    return [e.n for e in events]


async def test_many_tokens_are_coalesced_and_text_is_preserved(
    http: httpx.AsyncClient, bridge: Bridge
) -> None:
    pieces = [f"tok{i} " for i in range(300)]
    async with _sink(http, max_chars=10_000) as sink:
        for piece in pieces:
            await sink.token(piece)
    tokens = bridge.stored
    assert all(isinstance(e, Token) for e in tokens)
    assert 1 <= len(tokens) < len(pieces) // 10
    assert "".join(e.text for e in tokens if isinstance(e, Token)) == "".join(pieces)
    assert sink.posted == len(tokens)


async def test_max_chars_seals_a_token_event(http: httpx.AsyncClient, bridge: Bridge) -> None:
    async with _sink(http, max_chars=10) as sink:
        for _ in range(10):
            await sink.token("abc")
    texts = [e.text for e in bridge.stored if isinstance(e, Token)]
    assert "".join(texts) == "abc" * 10
    assert texts[:2] == ["abcabcabcabc", "abcabcabcabc"]  # sealed once 10 chars are reached
    assert all(len(t) <= 12 for t in texts)


async def test_empty_token_is_ignored(http: httpx.AsyncClient, bridge: Bridge) -> None:
    async with _sink(http) as sink:
        await sink.token("")
    assert bridge.posts == []


async def test_emit_seals_text_before_it_and_keeps_order(
    http: httpx.AsyncClient, bridge: Bridge
) -> None:
    async with _sink(http) as sink:
        await sink.token("Let me ")
        await sink.token("check.")
        await sink.emit(ToolStart(run=RUN, call_id="c1", name="sql", input={"q": 1}))
        await sink.token("Result: ")
        await sink.emit(ToolEnd(run=RUN, call_id="c1", name="sql", output="1"))
        await sink.token("done")
    stored = bridge.stored
    assert [type(e) for e in stored] == [Token, ToolStart, Token, ToolEnd, Token]
    texts = [e.text for e in stored if isinstance(e, Token)]
    assert texts == ["Let me check.", "Result: ", "done"]
    assert isinstance(stored[1], ToolStart) and stored[1].input == {"q": 1}


async def test_numbers_run_and_attempt_are_stamped_by_the_sink(
    http: httpx.AsyncClient, bridge: Bridge
) -> None:
    async with _sink(http) as sink:
        await sink.emit(Status(run="other", attempt=9, n=77, stage=Stage.AGENT_STARTED))
        for i in range(5):
            await sink.token(f"t{i}")
            # Let the sender post between tokens so several posts happen.
            await asyncio.wait_for(bridge.received.wait(), 5)
            bridge.received.clear()
            await sink.emit(Error(run=RUN, message=f"e{i}"))
    stored = bridge.stored
    assert len(bridge.posts) > 1
    assert _numbers(stored) == list(range(len(stored)))
    assert {(e.run, e.attempt) for e in stored} == {(RUN, ATTEMPT)}
    assert isinstance(stored[0], Status) and stored[0].stage is Stage.AGENT_STARTED


async def test_posts_carry_bearer_token_and_json(http: httpx.AsyncClient, bridge: Bridge) -> None:
    async with _sink(http) as sink:
        await sink.emit(Error(run=RUN, message="x"))
    assert bridge.headers[0]["authorization"] == "Bearer tok-123"
    assert bridge.headers[0]["content-type"] == "application/json"


async def test_503_is_retried_with_the_same_events(http: httpx.AsyncClient, bridge: Bridge) -> None:
    bridge.fail_first = 2
    async with _sink(http) as sink:
        await sink.token("hello")
        await sink.emit(Error(run=RUN, message="m"))
    statuses = [status for status, _ in bridge.posts]
    assert statuses == [503, 503, 200]
    first, second, third = (events for _, events in bridge.posts)
    assert first == second == third  # same events, same n: the bridge de-duplicates
    assert _numbers(bridge.stored) == [0, 1]
    assert sink.posted == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
async def test_other_transient_statuses_are_retried(
    http: httpx.AsyncClient, bridge: Bridge, status: int
) -> None:
    bridge.fail_first, bridge.fail_status = 1, status
    async with _sink(http) as sink:
        await sink.emit(Error(run=RUN, message="m"))
    assert [s for s, _ in bridge.posts] == [status, 200]


async def test_connect_error_is_retried_with_the_same_events(bridge: Bridge) -> None:
    flaky = FlakyTransport(httpx.ASGITransport(app=bridge.app), fail_first=2)
    async with httpx.AsyncClient(transport=flaky) as http, _sink(http) as sink:
        await sink.token("hi")
        await sink.emit(Error(run=RUN, message="m"))
    assert len(flaky.failed_bodies) == 2
    stored = bridge.stored
    assert [decode_event_batch(b) for b in flaky.failed_bodies] == [stored, stored]
    assert _numbers(stored) == [0, 1]


async def test_refused_events_fail_close(http: httpx.AsyncClient, bridge: Bridge) -> None:
    bridge.fail_first, bridge.fail_status = 1, 400
    sink = _sink(http)
    with pytest.raises(SinkFailed, match="400"):
        async with sink:  # leaving the block closes the sink
            await sink.emit(Error(run=RUN, message="m"))
    with pytest.raises(SinkFailed, match="400"):
        await sink.close()  # closing again reports the same failure
    assert [s for s, _ in bridge.posts] == [400]  # not retried
    with pytest.raises(SinkFailed):
        await sink.token("after")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
async def test_refusal_makes_the_next_token_raise(
    http: httpx.AsyncClient, bridge: Bridge, status: int
) -> None:
    bridge.fail_first, bridge.fail_status = 1, status
    sink = _sink(http)

    async def feed_until_refused() -> None:
        while True:
            await sink.token("x")
            await asyncio.sleep(0.005)  # yield so the sender can run (not synchronisation)

    with pytest.raises(SinkFailed, match=str(status)):
        async with sink:
            await sink.emit(Error(run=RUN, message="m"))
            with pytest.raises(SinkFailed, match=str(status)):
                await asyncio.wait_for(feed_until_refused(), 5)


async def test_retry_deadline_exceeded_fails(http: httpx.AsyncClient, bridge: Bridge) -> None:
    bridge.fail_first = 10_000
    started = time.monotonic()
    sink = _sink(http, retry_deadline_s=0.3)
    with pytest.raises(SinkFailed, match="503"):
        async with sink:
            await sink.emit(Error(run=RUN, message="m"))
    assert time.monotonic() - started < 3
    assert len(bridge.posts) >= 2
    assert bridge.stored == []


async def test_unreachable_bridge_fails_after_deadline(bridge: Bridge) -> None:
    flaky = FlakyTransport(httpx.ASGITransport(app=bridge.app), fail_first=10_000)
    async with httpx.AsyncClient(transport=flaky) as http:
        sink = _sink(http, retry_deadline_s=0.3)
        with pytest.raises(SinkFailed, match="unreachable"):
            async with sink:
                await sink.token("hi")
    assert len(flaky.failed_bodies) >= 2


async def test_slow_bridge_applies_backpressure(http: httpx.AsyncClient, bridge: Bridge) -> None:
    bridge.gate.clear()
    async with _sink(http, max_pending=3) as sink:
        for i in range(3):
            await sink.emit(Error(run=RUN, message=f"e{i}"))
        blocked = asyncio.create_task(sink.emit(Error(run=RUN, message="e3")))
        await asyncio.wait_for(bridge.received.wait(), 5)  # first post is in flight
        assert not blocked.done()
        bridge.gate.set()
        await asyncio.wait_for(blocked, 5)
    assert [e.message for e in bridge.stored if isinstance(e, Error)] == ["e0", "e1", "e2", "e3"]
    assert _numbers(bridge.stored) == [0, 1, 2, 3]


async def test_max_batch_splits_posts(http: httpx.AsyncClient, bridge: Bridge) -> None:
    bridge.gate.clear()
    async with _sink(http, max_batch=2) as sink:
        for i in range(5):
            await sink.emit(Error(run=RUN, message=f"e{i}"))
        bridge.gate.set()
    assert [len(events) for _, events in bridge.posts] == [2, 2, 1]
    assert _numbers(bridge.stored) == [0, 1, 2, 3, 4]


async def test_exception_inside_context_stops_the_sender(
    http: httpx.AsyncClient, bridge: Bridge
) -> None:
    bridge.gate.clear()
    sink = _sink(http)
    with pytest.raises(RuntimeError, match="agent crashed"):
        async with sink:
            await sink.emit(Error(run=RUN, message="m"))
            await asyncio.wait_for(bridge.received.wait(), 5)
            raise RuntimeError("agent crashed")
    assert sink._sender is not None and sink._sender.done()
    assert bridge.stored == []


async def test_undecodable_bridge_answer_fails_the_sink_instead_of_hanging() -> None:
    async def bad_gzip(request: Request) -> Response:
        await request.body()
        return Response(b"this is not gzip", headers={"Content-Encoding": "gzip"})

    app = Starlette(routes=[Route("/api/stream/{run}/chunk", bad_gzip, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        sink = _sink(http, max_pending=5)

        async def feed_until_failed() -> None:
            while True:
                await sink.emit(Error(run=RUN, message="m"))
                await asyncio.sleep(0.005)  # yield so the sender can run (not synchronisation)

        await sink.__aenter__()
        try:
            with pytest.raises(SinkFailed):
                await asyncio.wait_for(feed_until_failed(), 2)
        finally:
            with contextlib.suppress(Exception):  # cleanup only: stop the sender
                await sink.close()


class DownHostTransport(httpx.AsyncBaseTransport):
    """Fault injector: one host refuses every connection (a dead gateway replica)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, down_host: str) -> None:
        self.inner = inner
        self.down_host = down_host
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.down_host:
            self.refused += 1
            raise httpx.ConnectError("injected: replica down", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_dead_bridge_fails_over_to_the_next_with_the_same_events(bridge: Bridge) -> None:
    transport = DownHostTransport(httpx.ASGITransport(app=bridge.app), down_host="dead")
    async with httpx.AsyncClient(transport=transport) as http:
        sink = _sink(
            http,
            urls=["http://dead/api/stream/run_sink/chunk", URL],
            retry_deadline_s=5.0,
        )
        async with sink:
            await sink.emit(ToolStart(run=RUN, call_id="c1", name="run_command"))
            await sink.token("after the failover")
    assert transport.refused >= 1, "the dead bridge was tried first"
    assert [type(e) for e in bridge.stored] == [ToolStart, Token]
    assert _numbers(bridge.stored) == [0, 1], "each event stored once, in order"
