"""A conversation's one stream, its turns and its runs, on the whole stack: every run in order,
each run's events once, resumed across reconnects on either replica."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from urllib.parse import parse_qs, urlsplit

import httpx

from agentstream.devstack.sse_client import SseMessage, read_stream
from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete, read_whole_run
from tests.proof import expected_proof

QUESTIONS = ("Count the words in this first message", "And now count these words, please")


def _position(message: SseMessage) -> tuple[int, int]:
    record, _, event = (message.id or "").partition("-")
    return int(record), int(event)


class Reader:
    """One connection to a conversation's stream, read a message at a time."""

    def __init__(self, http: httpx.AsyncClient, url: str, last_event_id: str | None) -> None:
        self._messages: AsyncGenerator[SseMessage, None] = read_stream(
            http, url, last_event_id=last_event_id
        )

    async def next(self) -> SseMessage:
        return await asyncio.wait_for(anext(self._messages), RUN_TIMEOUT_S)

    async def until(self, received: list[SseMessage], done: int) -> None:
        """Read into ``received`` until it holds ``done`` terminal events."""
        while sum(m.terminal for m in received) < done:
            received.append(await self.next())

    async def close(self) -> None:
        await self._messages.aclose()


@contextlib.asynccontextmanager
async def reading(
    http: httpx.AsyncClient, url: str, last_event_id: str | None = None
) -> AsyncGenerator[Reader, None]:
    reader = Reader(http, url, last_event_id)
    try:
        yield reader
    finally:
        await reader.close()


async def _post(http: httpx.AsyncClient, gateway: str, message: str, conversation: str) -> str:
    answer = await http.post(
        f"{gateway}/api/messages", json={"message": message, "conversation_id": conversation}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["workflow_id"])


def _check_runs(
    received: list[SseMessage], runs: dict[str, list[SseMessage]], prompts: dict[str, str]
) -> None:
    """``received`` is each run's announcement, then its events as its own stream has them."""
    positions = [_position(m) for m in received]
    assert positions == sorted(set(positions)), "IDs grow, none twice"
    expected: list[tuple[str, str]] = []
    announced = [m for m in received if m.event == "run"]
    assert [m.json()["run"] for m in announced] == list(runs)
    for marker in announced:
        run = marker.json()["run"]
        assert marker.json()["prompt"] == prompts[run]
        record = _position(marker)[0]
        expected.append(("run", marker.data))
        expected += [(m.event or "", m.data) for m in runs[run]]
        own = [m for m in received if _position(m)[0] == record and m.event != "run"]
        # The run's own event IDs, under its record: the proof holds over them.
        assert [str(_position(m)[1]) for m in own] == [m.id for m in runs[run]]
        proof = own[-1].json()["completeness"]
        assert expected_proof((_position(m)[1], m.data.encode()) for m in own[:-1]) == (
            proof["events"],
            proof["sha256"],
        )
    assert [(m.event or "", m.data) for m in received] == expected


async def test_one_stream_carries_two_runs_in_order_across_reconnects(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    first, second = stack.gateway_urls
    conversation = f"conv_stream_{uuid.uuid4().hex[:12]}"
    answer = await http.post(
        f"{first}/api/messages", json={"message": QUESTIONS[0], "conversation_id": conversation}
    )
    assert answer.status_code == 202, answer.text
    run_1 = answer.json()["workflow_id"]
    url = answer.json()["conversation_stream_url"]
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert url == f"{first}/api/conversations/{conversation}/stream?token={token}"
    on_second = f"{second}/api/conversations/{conversation}/stream?token={token}"
    received: list[SseMessage] = []

    # A few events of run 1, then the connection drops.
    async with reading(http, url) as reader:
        while len(received) < 4:
            received.append(await reader.next())
    # Resumed on the other replica: the rest of run 1; run 2 is asked meanwhile and follows on
    # the same connection, which drops a few events into it.
    async with reading(http, on_second, received[-1].id) as reader:
        await reader.until(received, 1)
        run_2 = await _post(http, second, QUESTIONS[1], conversation)
        while not any(m.event == "run" and m.json()["run"] == run_2 for m in received):
            received.append(await reader.next())
        for _ in range(3):
            received.append(await reader.next())
    # Resumed on the first replica, to run 2's end.
    async with reading(http, first + urlsplit(url).path + f"?token={token}", received[-1].id) as r:
        await r.until(received, 2)

    runs = {run: await read_whole_run(http, first, run) for run in (run_1, run_2)}
    for messages in runs.values():
        assert_complete(messages)
    _check_runs(received, runs, dict(zip((run_1, run_2), QUESTIONS, strict=True)))

    # A client arriving later reads the same, from the conversation's first run.
    later: list[SseMessage] = []
    async with reading(http, on_second) as reader:
        await reader.until(later, 2)
    assert [(m.id, m.event, m.data) for m in later] == [(m.id, m.event, m.data) for m in received]
    # Resuming after a run's last event goes on with the next run's announcement.
    terminal_1 = next(m for m in received if m.terminal)
    after: list[SseMessage] = []
    async with reading(http, on_second, terminal_1.id) as reader:
        await reader.until(after, 1)
    assert after == received[received.index(terminal_1) + 1 :]

    # Its turns, and its runs newest first.
    view = (await http.get(f"{second}/api/conversations/{conversation}")).json()
    assert [(t["run_id"], t["prompt"], t["status"]) for t in view["turns"]] == [
        (run_1, QUESTIONS[0], "completed"),
        (run_2, QUESTIONS[1], "completed"),
    ]
    assert view["turns"][1]["answer"] == runs[run_2][-1].json()["result"]["final_answer"]
    assert view["org"] == "default" and view["stream_url"].startswith(second)
    listed = await http.get(
        f"{first}/api/runs", params={"conversation_id": conversation, "limit": 1}
    )
    assert [r["run_id"] for r in listed.json()["runs"]] == [run_2]


async def test_a_run_in_flight_is_listed_running(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    conversation = f"conv_flight_{uuid.uuid4().hex[:12]}"
    run = await _post(http, gateway, "Count these words", conversation)
    view = (await http.get(f"{gateway}/api/conversations/{conversation}")).json()
    assert [(t["run_id"], t["status"], t["answer"]) for t in view["turns"]] == [
        (run, "running", None)
    ]
    assert_complete(await read_whole_run(http, gateway, run))
    runs = (await http.get(f"{gateway}/api/runs", params={"conversation_id": conversation})).json()
    assert [(r["run_id"], r["status"]) for r in runs["runs"]] == [(run, "completed")]


async def test_conversation_reads_refuse_what_they_must(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[1]
    conversation = f"conv_refuse_{uuid.uuid4().hex[:12]}"
    answer = await http.post(
        f"{gateway}/api/messages", json={"message": "Hello", "conversation_id": conversation}
    )
    token = parse_qs(urlsplit(answer.json()["conversation_stream_url"]).query)["token"][0]
    stream = f"{gateway}/api/conversations/{conversation}/stream"
    refusals = [
        # Another conversation's token.
        (f"{gateway}/api/conversations/conv_other/stream", {"token": token}, {}, 403),
        (stream, {"token": "v1.forged.token"}, {}, 401),
        (stream, {}, {"Last-Event-ID": "12"}, 400),
        (stream, {}, {"Last-Event-ID": "1-x"}, 400),
        (f"{gateway}/api/conversations/bad.id/stream", {}, {}, 400),
        (f"{gateway}/api/conversations/conv_nobody_has/stream", {}, {}, 404),
        # Another org's (the open stack lets a caller name its org): unknown to it.
        (stream, {"org": "other_org"}, {}, 404),
        (f"{gateway}/api/conversations/{conversation}", {"org": "other_org"}, {}, 404),
        (f"{gateway}/api/conversations/conv_nobody_has", {}, {}, 404),
        (f"{gateway}/api/runs", {}, {}, 400),
        (f"{gateway}/api/runs", {"conversation_id": conversation, "limit": "0"}, {}, 400),
        (f"{gateway}/api/runs", {"conversation_id": conversation, "limit": "201"}, {}, 400),
        (f"{gateway}/api/runs", {"conversation_id": "a b"}, {}, 400),
    ]
    for url, params, headers, status in refusals:
        refused = await http.get(url, params=params, headers=headers)
        assert refused.status_code == status, (url, params, headers, refused.text)
        assert refused.json()["error"] and "detail" in refused.json()
    fresh = await http.post(f"{gateway}/api/conversations/{conversation}/stream-token")
    assert fresh.status_code == 200 and fresh.json()["stream_url"].startswith(stream)
    run = answer.json()["workflow_id"]
    assert_complete(await read_whole_run(http, gateway, run))
