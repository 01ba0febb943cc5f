"""``call_agent`` heartbeats carry the attempt's progress, visible in the workflow's description."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.temporal import describe_run
from agentstream.runtime.temporal_codec import data_converter
from tests.e2e.runs import read_whole_run, start_run


async def _heartbeat_details(client: Client, run: str) -> dict[str, Any] | None:
    description = await describe_run(client, run)
    if description is None:
        # The workflow start follows the 202: a first look may come before it.
        return None
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name == "call_agent" and pending.heartbeat_details.payloads:
            (details,) = await data_converter.decode(pending.heartbeat_details.payloads)
            return details  # type: ignore[no-any-return]
    return None


async def test_heartbeat_details_report_stage_tokens_and_tools(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # A slow agent of its own, so the attempt lives through several heartbeats.
    async with stack.dedicated_agent("progress", env={"SCRIPTED_TOKEN_DELAY_S": "0.1"}):
        gateway = stack.gateway_urls[0]
        run = await start_run(http, gateway, "report your progress", org="progress")
        temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
        details: dict[str, Any] | None = None
        async with asyncio.timeout(60):
            # Heartbeats arrive every couple of seconds: poll the description until one shows
            # the agent at work with a tool behind it.
            while not (details and details["tools_run"] >= 1):
                details = await _heartbeat_details(temporal, run)
                await asyncio.sleep(0.5)
        assert details["stage"] == "agent_started"
        assert details["tokens"] > 0
        assert details["last_tool"] in ("write_file", "run_command")
        messages = await read_whole_run(http, gateway, run)
        assert messages[-1].event == "done"
