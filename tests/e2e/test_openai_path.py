"""The real LangChain OpenAI client, driven by an OpenAI-compatible streaming server on loopback."""

from __future__ import annotations

import asyncpg
import httpx

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.fakes.openai_server import (
    ANSWER_PREFIX,
    RUN_COMMAND_ARGS,
    WRITE_FILE_ARGS,
    FakeOpenAIServer,
    run_openai_server,
)


async def test_openai_compatible_model_streams_tokens_and_tool_calls(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    fake = FakeOpenAIServer()
    model = {
        "AGENT_MODEL": "openai:gpt-4o-mini",
        "OPENAI_API_KEY": "test-key",
    }
    # Its own org, so only its worker (and so only this agent) takes the run.
    async with (
        run_openai_server(fake) as base_url,
        stack.dedicated_agent("openai", env={**model, "OPENAI_BASE_URL": base_url}),
    ):
        gateway = stack.gateway_urls[1]
        run = await start_run(http, gateway, "Say hello from the sandbox", org="openai")
        messages = await read_whole_run(http, gateway, run)

    assert_complete(messages)
    types = [m.event for m in messages]
    assert {"status", "token", "tool_start", "tool_end"} <= set(types)
    assert types[-1] == "done"
    events = [m.json() for m in messages]
    started = next(e for e in events if e.get("stage") == "agent_started")
    assert started["model"] == "openai:gpt-4o-mini"
    tools = [(e["name"], e["input"]) for e in events if e["type"] == "tool_start"]
    assert tools == [("write_file", WRITE_FILE_ARGS), ("run_command", RUN_COMMAND_ARGS)]
    ends = [e for e in events if e["type"] == "tool_end"]
    assert ends[1]["output"].strip() == "hello from the sandbox"
    tokens = [e["text"] for e in events if e["type"] == "token"]
    assert "".join(tokens).startswith(ANSWER_PREFIX)
    result = events[-1]["result"]
    assert result["final_answer"].startswith(ANSWER_PREFIX)
    assert "hello from the sandbox" in result["final_answer"]
    assert result["model"] == "openai:gpt-4o-mini"

    assert len(fake.requests) == 3, "one model call per step: two tool calls, one answer"
    assert all(r["stream"] is True for r in fake.requests)
    assert all(
        {t["function"]["name"] for t in r["tools"]} >= {"write_file", "run_command"}
        for r in fake.requests
    )
    count = await db.fetchval("SELECT count(*) FROM messages WHERE run_id = $1", run)
    assert count == 1
