"""Helpers for end-to-end tests: start a run, read its stream, check its shape."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from agentstream.devstack.sse_client import SseMessage, read_stream
from tests.proof import expected_proof

RUN_TIMEOUT_S = 90.0


async def start_run(http: httpx.AsyncClient, gateway: str, message: str, **extra: str) -> str:
    """POST a message and return the run ID."""
    response = await http.post(f"{gateway}/api/messages", json={"message": message, **extra})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["workflow_id"].startswith("run_")
    assert body["stream_url"] == (
        f"{gateway}/api/stream/{body['workflow_id']}?token={body['stream_token']}"
    )
    return str(body["workflow_id"])


async def read_whole_run(
    http: httpx.AsyncClient, gateway: str, run: str, *, last_event_id: str | None = None
) -> list[SseMessage]:
    """Read one SSE connection until the server closes it; it must close after a terminal."""

    async def read() -> list[SseMessage]:
        url = f"{gateway}/api/stream/{run}"
        # A timeout cancels the read mid-stream: its connection is closed then.
        async with contextlib.aclosing(read_stream(http, url, last_event_id=last_event_id)) as s:
            return [m async for m in s]

    return await asyncio.wait_for(read(), RUN_TIMEOUT_S)


def assert_complete(messages: list[SseMessage]) -> None:
    """Strictly increasing IDs, one terminal event, the last one, and the events before it are
    every event of the run, once, in order, as the terminal event's completeness proof says.

    The proof is recomputed with the tests' own copy of the README's recipe.
    """
    assert messages and messages[-1].terminal, [m.event for m in messages]
    before, terminal = messages[:-1], messages[-1]
    ids = [int(m.id) for m in messages if m.id is not None]
    assert len(ids) == len(messages), "every event carries an id"
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {ids}"
    assert not any(m.terminal for m in before), "one terminal event, the last"
    proof = terminal.json().get("completeness")
    assert proof is not None, "the terminal event carries its proof"
    received = expected_proof((int(m.id or 0), m.data.encode()) for m in before)
    assert received == (proof["events"], proof["sha256"])
