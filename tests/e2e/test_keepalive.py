"""A run that never ends (no worker serves its org) keeps its stream alive and visible."""

from __future__ import annotations

import asyncio
import time

import httpx
from temporalio.client import Client

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.temporal_codec import data_converter
from tests.e2e.runs import start_run


async def test_a_stuck_run_streams_keepalives_and_shows_as_running(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "nobody will answer", org="nobody")
    lines: list[str] = []
    try:
        started = time.monotonic()
        async with http.stream("GET", f"{gateway}/api/stream/{run}") as response:
            assert response.status_code == 200
            async with asyncio.timeout(30):
                async for line in response.aiter_lines():
                    lines.append(line)
                    if sum(line.startswith(": ping") for line in lines) >= 3:
                        break
        assert time.monotonic() - started >= 2, "pings are spaced, not a burst"
        events = [line for line in lines if line.startswith("event:")]
        assert events == ["event: status"], "queued, then only keepalives: no silent close"
        view = (await http.get(f"{gateway}/api/runs/{run}")).json()
        assert view["status"] == "running" and view["org"] == "nobody"
    finally:
        temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
        await temporal.get_workflow_handle(run).terminate("test over")
