"""LangChain's real OpenAI client against the scripted fake Chat Completions server."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain.chat_models import init_chat_model
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool

from tests.fakes.openai_server import (
    MAX_BODY_BYTES,
    RUN_COMMAND_ARGS,
    WRITE_FILE_ARGS,
    FakeOpenAIServer,
    run_openai_server,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> FakeOpenAIServer:
    """A fresh fake per test, so recorded requests never leak between tests."""
    return FakeOpenAIServer()


@pytest.fixture
async def base_url(fake: FakeOpenAIServer) -> AsyncIterator[str]:
    """The OpenAI base URL of `fake`, served on loopback for the test."""
    async with run_openai_server(fake) as url:
        yield url


def sandbox_tools(root: Path) -> list[BaseTool]:
    """The two tools the script calls, confined to `root` so the test really runs them."""

    @tool
    def write_file(path: str, content: str) -> str:
        """Write `content` to the file at `path`."""
        (root / path).write_text(content)
        return f"wrote {len(content)} bytes to {path}"

    @tool
    def run_command(command: str) -> str:
        """Run a shell-free command and return its standard output."""
        argv = shlex.split(command)
        # The script asks for python3; use this interpreter so the test does not depend on PATH.
        if argv[0] == "python3":
            argv[0] = sys.executable
        done = subprocess.run(
            argv, cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout

    return [write_file, run_command]


async def stream_turn(
    model: Runnable[LanguageModelInput, Any], messages: list[BaseMessage], **kwargs: Any
) -> list[AIMessageChunk]:
    """Stream one model turn and return its chunks, checking each is a message chunk."""
    chunks: list[AIMessageChunk] = []
    async for chunk in model.astream(messages, **kwargs):
        assert isinstance(chunk, AIMessageChunk)
        chunks.append(chunk)
    return chunks


def aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    """Merge streamed chunks the way LangChain does, reassembling tool-call arguments."""
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


async def test_langchain_streams_tool_calls_then_text(
    fake: FakeOpenAIServer, base_url: str, tmp_path: Path
) -> None:
    tools = sandbox_tools(tmp_path)
    tools_by_name = {t.name: t for t in tools}
    model = init_chat_model(
        "openai:gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0, streaming=True
    ).bind_tools(tools)
    messages: list[BaseMessage] = [HumanMessage("Write hello.py and run it.")]

    # Turn 1: the tool call arrives as a header delta plus argument fragments.
    chunks = await stream_turn(model, messages)
    assert sum(bool(c.tool_call_chunks) for c in chunks) > 1
    first = aggregate(chunks)
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [("write_file", WRITE_FILE_ARGS)]
    assert first.response_metadata["finish_reason"] == "tool_calls"
    messages += [first, await tools_by_name["write_file"].ainvoke(first.tool_calls[0])]
    assert (tmp_path / "hello.py").read_text() == WRITE_FILE_ARGS["content"]

    # Turn 2: one tool result so far, so the script runs the file.
    second = aggregate(await stream_turn(model, messages))
    assert [(c["name"], c["args"]) for c in second.tool_calls] == [
        ("run_command", RUN_COMMAND_ARGS)
    ]
    output = await tools_by_name["run_command"].ainvoke(second.tool_calls[0])
    assert isinstance(output, ToolMessage)
    assert output.content == "hello from the sandbox\n"
    messages += [second, output]

    # Turn 3: text streamed in several pieces, quoting the last tool result.
    # stream_usage is off by default for a custom base_url; asking for it covers the usage chunk.
    chunks = await stream_turn(model, messages, stream_usage=True)
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1
    assert output.content in "".join(texts)
    final = aggregate(chunks)
    assert final.tool_calls == []
    assert final.response_metadata["finish_reason"] == "stop"
    assert final.usage_metadata is not None
    assert final.usage_metadata["output_tokens"] == len(texts)

    assert len(fake.requests) == 3
    for sent in fake.requests:
        assert sent["stream"] is True
        assert sent["model"] == "gpt-4o-mini"
        assert {t["function"]["name"] for t in sent["tools"]} == {"write_file", "run_command"}
    assert [sum(m["role"] == "tool" for m in r["messages"]) for r in fake.requests] == [0, 1, 2]
    assert "stream_options" not in fake.requests[0]
    assert fake.requests[2]["stream_options"] == {"include_usage": True}


async def test_without_tools_answers_in_text(fake: FakeOpenAIServer, base_url: str) -> None:
    model = init_chat_model(
        "openai:gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0, streaming=True
    )
    reply = aggregate(await stream_turn(model, [HumanMessage("Hi")]))
    assert reply.tool_calls == []
    assert reply.text == "There is no tool output to report."
    assert "tools" not in fake.requests[0]


async def test_non_streaming_request_gets_a_completion_object(base_url: str) -> None:
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Write hello.py"}],
        "tools": [{"type": "function", "function": {"name": "write_file", "parameters": {}}}],
    }
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/chat/completions", json=request)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"]) == WRITE_FILE_ARGS


async def test_oversized_body_is_rejected_with_413(fake: FakeOpenAIServer, base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/chat/completions",
            content=b" " * (MAX_BODY_BYTES + 1),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert fake.requests == []


async def test_oversized_chunked_body_is_rejected_with_413(base_url: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        # No Content-Length is known up front, so the limit must hold while reading.
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b" " * 65536

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/chat/completions", content=body())
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "invalid_request"),
        (b'{"messages": []}', "invalid_request"),
    ],
)
async def test_malformed_body_is_rejected_with_400(
    fake: FakeOpenAIServer, base_url: str, content: bytes, code: str
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/chat/completions", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert fake.requests == []


async def test_runs_as_a_separate_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai_server",
        "--port",
        "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        root_url = line.removeprefix("listening on ").strip()
        request = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        async with httpx.AsyncClient(base_url=root_url) as client:
            response = await client.post("/v1/chat/completions", json=request)
        assert response.status_code == 200
        assert response.json()["choices"][0]["finish_reason"] == "stop"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
