"""A flood of invalid requests on one replica: every one is a 4xx, and valid readers miss nothing.

10,000 bad requests (malformed bodies, invalid and unknown run IDs, bad ``Last-Event-ID``,
bridge posts without or with forged tokens, oversize bodies) are fired at one gateway replica,
50 at a time, while a run is started on that replica and read by 5 SSE clients. Every bad
request must get its exact 4xx JSON error, never a 5xx or a dropped connection; every reader
must get the whole run, identical to a replay from the start; and the replica must serve a
fresh request promptly afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.tokens import TokenClaims, mint_token
from tests.e2e.runs import assert_complete, read_whole_run, start_run

FLOOD_REQUESTS = 10_000
IN_FLIGHT = 50
READERS = 5
# The readers' run starts once this many bad requests were answered: it runs inside the flood.
START_RUN_AFTER = 1_000
MAX_BODY_BYTES = 1_048_576  # the gateway's default MAX_BODY_BYTES
MAX_MESSAGE_CHARS = 32_000
INJECTED = "flood-injected"


@dataclass(frozen=True, slots=True)
class Probe:
    """One bad request and the exact status it must get."""

    kind: str
    method: str
    path: str
    expected: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    # Sent with chunked transfer encoding: the gateway reads it up to its limit, then refuses.
    chunked: bool = False


def _chunks(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    async def generate() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return generate()


# Every route that names a run, as (method, path with {} for the run ID).
_BRIDGE = ("POST", "/api/stream/{}/chunk")
_RUN_ROUTES = [
    ("GET", "/api/stream/{}"),
    ("GET", "/api/stream?workflow_id={}"),
    ("GET", "/api/runs/{}"),
    ("POST", "/api/runs/{}/cancel"),
    ("POST", "/api/runs/{}/stream-token"),
    _BRIDGE,
]


class Flood:
    """Fires :data:`FLOOD_REQUESTS` bad requests with bounded concurrency and records answers."""

    def __init__(self, stack: LocalStack, gateway: str) -> None:
        self.stack = stack
        self.gateway = gateway
        # Until the readers' run exists, probes that target "the run" use an unknown valid ID.
        self.target = "run_flood_not_started"
        self.answered = 0
        self.statuses: collections.Counter[tuple[str, int | str]] = collections.Counter()
        self.wrong: list[str] = []
        self.progress = asyncio.Event()
        self.duration_s = 0.0
        self._rng = random.Random(20_240_601)
        self._oversize = b'{"message": "' + b"x" * MAX_BODY_BYTES + b'"}'
        self._too_long = b'{"message": "' + b"y" * (MAX_MESSAGE_CHARS + 1) + b'"}'

    def _token(self, kind: str, run: str, *, ttl: int = 300, secret: str | None = None) -> str:
        claims = TokenClaims(
            kind=kind,  # type: ignore[arg-type]
            run=run,
            org="default",
            attempt=1,
            exp=int(time.time()) + ttl,
        )
        return mint_token(secret or self.stack.callback_secret, claims)

    def probe(self, index: int) -> Probe:
        """The ``index``-th bad request: a reproducible mix of every kind of bad input."""
        rng = self._rng
        run = self.target
        unknown = f"run_flood_unknown_{index}"
        bad_id = rng.choice(["a.b", "x*", "a>b", "r" * 65, "has space", "runé", "a:b"])
        event = b'{"type": "token", "run": "%s", "text": "%s"}' % (run.encode(), INJECTED.encode())
        chunk = f"/api/stream/{run}/chunk"
        roll = rng.random()
        if roll < 0.18:
            body = rng.choice(
                [
                    b'{"message": "hi"',
                    b"",
                    b"[1, 2]",
                    b'{"message": 5}',
                    b'{"message": ""}',
                    b'{"message": "hi", "surprise": 1}',
                    b'{"message": "hi", "org": "a.b"}',
                    b"\xff\xfe\x00garbage",
                    b"null",
                ]
            )
            return Probe("malformed_message", "POST", "/api/messages", 400, _JSON, body)
        if roll < 0.42:
            method, path = rng.choice(_RUN_ROUTES)
            return Probe("invalid_run_id", method, path.format(bad_id), 400, content=b"{}")
        if roll < 0.54:
            # The bridge refuses a request without its token before it looks for the run.
            method, path = rng.choice([route for route in _RUN_ROUTES if route != _BRIDGE])
            path = path.format(unknown)
            return Probe("unknown_run", method, path, 404)
        if roll < 0.64:
            bad = rng.choice(["abc", "-1", "1e3", "1.5", "9" * 21, "0x10", "+7", "7a"])
            if rng.random() < 0.5:
                return Probe(
                    "bad_last_event_id", "GET", f"/api/stream/{run}", 400, {"Last-Event-ID": bad}
                )
            return Probe("bad_last_event_id", "GET", f"/api/stream/{run}?last_event_id={bad}", 400)
        if roll < 0.74:
            headers = rng.choice([{}, {"Authorization": "Basic eA=="}, {"Authorization": "Bearer"}])
            return Probe("bridge_no_token", "POST", chunk, 401, {**_JSON, **headers}, event)
        if roll < 0.90:
            good = self._token("callback", run)
            token = rng.choice(
                [
                    good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
                    self._token("callback", "run_someone_else"),
                    self._token("callback", run, ttl=-10),
                    self._token("stream", run),
                    self._token("callback", run, secret="not-the-secret"),
                    "v1.garbage.garbage",
                    "garbage",
                ]
            )
            return Probe(
                "bridge_forged_token",
                "POST",
                chunk,
                401,
                {**_JSON, "Authorization": f"Bearer {token}"},
                event,
            )
        if roll < 0.92:
            return Probe("message_too_long", "POST", "/api/messages", 400, _JSON, self._too_long)
        if roll < 0.94:
            # Read up to the limit, then refused. (A declared Content-Length over the limit is
            # refused unread: see test_a_body_refused_unread_still_gets_its_answer.)
            return Probe(
                "oversize_body", "POST", "/api/messages", 413, _JSON, self._oversize, chunked=True
            )
        method, path, status = rng.choice(
            [
                ("GET", "/api/nowhere", 404),
                ("GET", "/api/messages", 405),
                ("DELETE", f"/api/runs/{unknown}", 405),
            ]
        )
        return Probe("wrong_route", method, path, status)

    async def _send(self, client: httpx.AsyncClient, probe: Probe) -> None:
        content = _chunks(probe.content) if probe.chunked and probe.content else probe.content
        try:
            response = await client.request(
                probe.method, self.gateway + probe.path, headers=probe.headers, content=content
            )
        except httpx.HTTPError as exc:
            self.statuses[(probe.kind, type(exc).__name__)] += 1
            self.wrong.append(f"{probe.method} {probe.path} ({probe.kind}): {exc!r}")
            return
        self.statuses[(probe.kind, response.status_code)] += 1
        problem = ""
        if response.status_code != probe.expected:
            problem = f"status {response.status_code}, expected {probe.expected}"
        elif not response.headers.get("content-type", "").startswith("application/json"):
            problem = f"content-type {response.headers.get('content-type')!r}"
        else:
            body = response.json()
            if not (isinstance(body, dict) and body.get("error") and "detail" in body):
                problem = "not the JSON error shape"
        if problem:
            self.wrong.append(
                f"{probe.method} {probe.path} ({probe.kind}) headers={probe.headers} "
                f"body={(probe.content or b'')[:80]!r}: {problem}: {response.text[:200]}"
            )

    async def run(self) -> None:
        indexes = itertools.count()
        started = time.monotonic()

        async def worker() -> None:
            # A client per worker: one httpx client sharing 50 connections spends more time in
            # its pool than on the wire (~150 req/s here, against ~800 req/s this way).
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as client:
                # One shared counter: the workers take the next probe until all were sent.
                while (index := next(indexes)) < FLOOD_REQUESTS:
                    await self._send(client, self.probe(index))
                    self.answered += 1
                    if self.answered >= START_RUN_AFTER:
                        self.progress.set()

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        self.duration_s = time.monotonic() - started
        self.progress.set()


_JSON = {"Content-Type": "application/json"}


def _signature(messages: list[SseMessage]) -> list[tuple[str | None, str, str]]:
    return [(m.id, m.event, m.data) for m in messages]


async def test_a_flood_of_bad_requests_is_refused_and_valid_readers_miss_nothing(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    assert urlsplit(gateway).hostname == "127.0.0.1", "the flood targets loopback only"
    flood = Flood(stack, gateway)
    flood_task = asyncio.create_task(flood.run())
    try:
        async with asyncio.timeout(60):
            await flood.progress.wait()
        assert not flood_task.done(), "the flood is still going when the run starts"

        # The readers' own client: nothing of theirs waits behind the flood's connections.
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as readers_http:
            run = await start_run(
                readers_http, gateway, "Count the words while the gateway is flooded"
            )
            flood.target = run
            started_at = flood.answered
            readings = await asyncio.gather(
                *(read_whole_run(readers_http, gateway, run) for _ in range(READERS))
            )
            finished_at = flood.answered
        async with asyncio.timeout(120):
            await flood_task
    finally:
        if not flood_task.done():
            flood_task.cancel()
            await asyncio.gather(flood_task, return_exceptions=True)

    print(
        f"\nflood: {FLOOD_REQUESTS} bad requests, {IN_FLIGHT} in flight, in "
        f"{flood.duration_s:.1f} s = {FLOOD_REQUESTS / flood.duration_s:.0f} req/s; the run was"
        f" read from bad request {started_at} to {finished_at}; answers:"
        f" {dict(sorted(flood.statuses.items()))}"
    )
    assert finished_at < FLOOD_REQUESTS, "the whole run was read while the flood went on"
    assert sum(flood.statuses.values()) == FLOOD_REQUESTS
    assert not flood.wrong, f"{len(flood.wrong)} bad answers, e.g.:\n" + "\n".join(flood.wrong[:20])

    replay = await read_whole_run(http, gateway, run)
    assert_complete(replay)
    assert replay[-1].event == "done"
    for reading in readings:
        assert_complete(reading)
        assert reading[-1].event == "done"
        assert _signature(reading) == _signature(replay), "a reader missed or changed an event"
    other_replica = await read_whole_run(http, stack.gateway_urls[1], run)
    assert _signature(other_replica) == _signature(replay)
    assert INJECTED not in "".join(m.data for m in replay), "no forged chunk was stored"

    # The replica serves valid requests promptly once the flood is over.
    async with asyncio.timeout(2):
        health = await http.get(f"{gateway}/healthz")
    assert health.status_code == 200
    async with asyncio.timeout(60):
        fresh = await start_run(http, gateway, "Still there after the flood?")
        messages = await read_whole_run(http, gateway, fresh)
    assert_complete(messages)
    assert messages[-1].event == "done"


# The gateway drains what a refused request still sends, up to 4 MiB, so the client reads the
# answer on a connection it may reuse; past that it stops reading and drops the connection
# (uvicorn alone would read and discard any amount: the bound is the gateway's).
DRAINED_BODY_BYTES = 3 * MAX_BODY_BYTES
UNDRAINED_BODY_BYTES = 32 * MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/messages", 413), ("/api/stream/run_unread_body/chunk", 401)],
    ids=["messages-413", "bridge-401"],
)
async def test_a_body_refused_unread_gets_its_answer_up_to_the_drain_bound(
    stack: LocalStack, path: str, status: int
) -> None:
    gateway = stack.gateway_urls[0]
    outcomes: collections.Counter[int | str] = collections.Counter()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        for size in (DRAINED_BODY_BYTES, UNDRAINED_BODY_BYTES):
            body = b'{"message": "' + b"x" * size + b'"}'
            for _ in range(5):
                try:
                    response = await client.post(gateway + path, content=body, headers=_JSON)
                except httpx.TransportError as exc:
                    outcomes[f"{size}:{type(exc).__name__}"] += 1
                else:
                    closed = ":close" if response.headers.get("connection") == "close" else ""
                    outcomes[f"{size}:{response.status_code}{closed}"] += 1
        # Beyond the bound the connection was dropped, not the service: it still answers.
        assert (await client.get(f"{gateway}/healthz")).status_code == 200
    assert outcomes[f"{DRAINED_BODY_BYTES}:{status}"] == 5, outcomes
    assert (
        outcomes[f"{UNDRAINED_BODY_BYTES}:{status}:close"]
        + sum(
            n
            for key, n in outcomes.items()
            if key.startswith(f"{UNDRAINED_BODY_BYTES}:") and "Error" in key
        )
        == 5
    ), outcomes
