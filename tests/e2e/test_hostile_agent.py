"""A model that tries to break out of its sandbox gets tool errors, and the run goes on."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.sandbox.confinement import Limits, probe_isolation
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.fakes.openai_server import FakeOpenAIServer, run_openai_server

ESCAPES = [
    "cat /etc/shadow",
    "ln -s /etc/shadow leak && cat leak",
    "bomb() { bomb | bomb & }; bomb; exit 1",
    "head -c 10G /dev/zero > big",
    "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\"",
]
# Harmless, but their output must not carry the services' secrets.
LOOKS = ["env", "echo still-alive"]


async def test_escape_attempts_are_tool_errors_and_the_run_completes(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    async with run_openai_server(FakeOpenAIServer()) as base_url:
        model = {"AGENT_MODEL": "openai:gpt-4o-mini", "OPENAI_BASE_URL": base_url}
        async with stack.dedicated_agent("hostile", env=model) as agent:
            gateway = stack.gateway_urls[0]
            # The agent's own environment holds the callback secret: it must stay out of reach.
            attempts = [*ESCAPES, f"cat /proc/{agent.process.pid}/environ"]
            prompt = "\n".join(f"$ {command}" for command in [*attempts, *LOOKS])
            run = await start_run(http, gateway, prompt, org="hostile")
            messages = await read_whole_run(http, gateway, run)

    assert_complete(messages)
    assert messages[-1].event == "done"
    ends = [m.json() for m in messages if m.event == "tool_end"]
    assert [e["name"] for e in ends] == ["run_command"] * (len(attempts) + len(LOOKS))
    for attempt, end in zip(attempts, ends, strict=False):
        assert end["error"], f"{attempt!r} reported no error: {end['output']}"
    assert "root:" not in ends[0]["output"] and "root:" not in ends[1]["output"]
    env, last = ends[-2:]
    assert env["error"] is None and "PATH=" in env["output"]
    assert last["error"] is None and "still-alive" in last["output"]
    everything = "".join(m.data for m in messages)
    assert stack.callback_secret not in everything, "no secret reached the events"
    assert "still-alive" in messages[-1].json()["result"]["final_answer"]


PROJECT = Path(__file__).resolve().parents[2]


async def test_hostile_writes_land_nowhere_outside_the_workspace(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    if await probe_isolation(isolate_network=False, limits=Limits()) is None:
        pytest.skip("no private mount view here (the stack runs commands unconfined)")
    name = f"agentstream-hostile-{uuid.uuid4().hex}"
    places = [
        Path("/tmp"),
        Path("/var/tmp"),
        Path("/dev/shm"),
        PROJECT,
        Path.home(),
        stack.sandbox_root,
    ]
    writes = [f"echo pwned > {place}/{name}" for place in places]
    # The symlink to / that once reached the machine's shared /tmp.
    writes.append(f"ln -s / root && echo pwned > root/tmp/{name}-via-link")
    outside = [place / name for place in places] + [Path("/tmp", f"{name}-via-link")]
    async with run_openai_server(FakeOpenAIServer()) as base_url:
        model = {"AGENT_MODEL": "openai:gpt-4o-mini", "OPENAI_BASE_URL": base_url}
        async with stack.dedicated_agent("hostile-writes", env=model):
            gateway = stack.gateway_urls[0]
            prompt = "\n".join(f"$ {command}" for command in writes)
            try:
                run = await start_run(http, gateway, prompt, org="hostile-writes")
                messages = await read_whole_run(http, gateway, run)
                left = [p for p in outside if await asyncio.to_thread(p.exists)]
            finally:
                for path in outside:
                    await asyncio.to_thread(path.unlink, missing_ok=True)

    assert_complete(messages)
    assert messages[-1].event == "done"
    assert len([m for m in messages if m.event == "tool_end"]) == len(writes)
    assert left == [], f"a sandbox command wrote outside its workspace: {left}"
