"""Cancellation, a slow client among fast ones, and a gateway told to stop."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import nats
import psutil

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.terminal_publisher import publish_terminal
from agentstream.runtime.tokens import TokenClaims, mint_token
from schemas import AgentResult, Done
from tests.e2e.runs import assert_complete, start_run
from tests.faults.conftest import CLIENT_QUEUE
from tests.faults.streams import Client, keys, read_while_a_gateway_fails


async def test_cancel_mid_run_ends_the_stream_stops_the_agent_and_removes_the_sandbox(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    a = fault_stack.gateway_urls[0]
    # A slow agent of its own, so the run is certainly still going when the cancel lands.
    slow = {"SCRIPTED_TOKEN_DELAY_S": "0.3"}
    async with fault_stack.dedicated_agent("slow", env=slow) as agent:
        agent_url = agent.url
        run = await start_run(http, a, "cancel me", org="slow")
        client = Client(http, [a], run)
        async with client.following() as following:
            await client.wait_for(lambda m: m.event == "token")
            assert run in (await http.get(f"{agent_url}/ai/agent/runs")).json()["running"]

            cancelled_at = time.monotonic()
            assert (await http.post(f"{a}/api/runs/{run}/cancel")).status_code == 202
            messages = await following

        assert messages[-1].event == "cancelled"
        async with asyncio.timeout(5):
            # Another process's state: polling its probe is the only way to observe it.
            while run in (await http.get(f"{agent_url}/ai/agent/runs")).json()["running"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert time.monotonic() - cancelled_at < 5, "the agent stopped within 5 s"
    assert not (fault_stack.sandbox_root / run).exists()
    assert (await http.get(f"{a}/api/runs/{run}")).json()["status"] == "cancelled"
    assert_complete(messages)
    assert "done" not in [m.event for m in messages]


def _bearer(stack: LocalStack, run: str) -> dict[str, str]:
    claims = TokenClaims(
        kind="callback", run=run, org="default", attempt=1, exp=int(time.time()) + 600
    )
    return {"Authorization": f"Bearer {mint_token(stack.callback_secret, claims)}"}


async def _open_stalled_client(port: int, run: str) -> tuple[asyncio.StreamReader, socket.socket]:
    """A client that sends its request and then stops reading (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    # HTTP/1.0: the body is the raw event stream, with no chunked framing to undo.
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    writer.write(f"GET /api/stream/{run} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    return reader, sock


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed; a reset may discard the unread rest."""
    received = bytearray()
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received)


def _complete_events(raw: bytes) -> list[SseMessage]:
    if b"\r\n\r\n" not in raw:
        return []
    body = raw.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    events = []
    for block in body.split("\r\n\r\n")[:-1]:
        fields = dict(
            line.split(": ", 1) for line in block.split("\r\n") if not line.startswith(":")
        )
        if "data" in fields:
            events.append(SseMessage(event=fields["event"], data=fields["data"], id=fields["id"]))
    return events


async def test_slow_client_is_cut_off_without_stalling_ten_others_and_resumes_exactly(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    a = fault_stack.gateway_urls[0]
    port = fault_stack.gateway_ports[0]
    run = "run_slow_client_" + str(time.time_ns())
    url = f"{a}/api/stream/{run}/chunk"
    headers = _bearer(fault_stack, run)
    text = "x" * 2000
    first = await http.post(
        url, json={"type": "token", "run": run, "n": 0, "text": "start"}, headers=headers
    )
    assert first.status_code == 200

    gateway = psutil.Process(fault_stack.processes["gateway-0"].pid)
    rss_before = gateway.memory_info().rss
    stalled, sock = await _open_stalled_client(port, run)
    fast = [Client(http, [a], run) for _ in range(10)]
    following = [asyncio.create_task(c.follow()) for c in fast]
    await asyncio.gather(*(c.wait_for(lambda m: m.id is not None) for c in fast))

    total = 1500
    for start in range(1, total, 100):
        events = [
            {"type": "token", "run": run, "n": n, "text": text}
            for n in range(start, min(start + 100, total))
        ]
        assert (await http.post(url, json=events, headers=headers)).status_code == 200
    nc = await nats.connect(fault_stack.nats_url)
    try:
        done = Done(run=run, result=AgentResult(final_answer="slow client test"))
        await publish_terminal(nc, HistoryReader(nc), "default", done)
    finally:
        await nc.close()

    # The ten fast clients finish while the stalled one has not read a byte since its headers.
    results = await asyncio.gather(*following)
    for received in results:
        assert_complete(received)
        assert len(received) == total + 1
    expected = keys(results[0])
    growth = gateway.memory_info().rss - rss_before
    assert growth < 200 * 1024 * 1024, f"gateway grew by {growth} bytes"

    async with asyncio.timeout(30):
        # Returns only once the server closed the stream: it was cut off, not left hanging.
        raw = await _read_until_closed(stalled)
    sock.close()
    got = _complete_events(raw)
    assert not (got and got[-1].terminal), "cut off before the end"
    assert len(got) < total - CLIENT_QUEUE, "disconnected once its queue bound was reached"
    resumed = Client(http, [a], run)
    resumed.messages = list(got)
    await resumed.follow()
    assert_complete(resumed.messages)
    assert keys(resumed.messages) == expected


async def test_sigterm_ends_streams_so_clients_resume_elsewhere_and_the_gateway_exits(
    fault_stack: LocalStack, http: httpx.AsyncClient
) -> None:
    _a, b, c = fault_stack.gateway_urls

    async def stop() -> None:
        stopped_at = time.monotonic()
        code = await fault_stack.processes["gateway-2"].stop(timeout_s=20)
        assert code == 0, "clean exit"
        assert time.monotonic() - stopped_at < 15, "exited within its grace period"

    client = await read_while_a_gateway_fails(
        http, fault_stack, "graceful gateway shutdown", [c, b], "gateway-2", stop
    )

    assert client.connections >= 2
    assert_complete(client.messages)
