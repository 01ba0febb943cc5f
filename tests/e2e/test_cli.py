"""The ``agentstream chat`` command as a user runs it, against open and secured gateways."""

from __future__ import annotations

import asyncio
import re
import sys

from agentstream.devstack.processes import free_port
from agentstream.devstack.stack import LocalStack
from gateway.auth import hash_api_key


async def _chat(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream",
        "chat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    return await process.wait(), output.decode()


async def test_chat_prints_the_run_live_and_exits_zero_on_done(stack: LocalStack) -> None:
    code, output = await _chat("Count my words please", "--gateway", stack.gateway_urls[0])
    assert code == 0, output
    assert "· agent_started (offline-scripted)" in output
    assert "→ write_file" in output and "← run_command" in output
    assert "Final answer:" in output and "words: 4" in output
    assert re.search(r"✓ all \d+ events received \(sha256 [0-9a-f]{12}…\)", output), output


async def test_chat_sends_its_api_key_to_a_secured_gateway(stack: LocalStack) -> None:
    key = "cli-test-key-0123456789abcdef"
    port = free_port()
    gateway = await stack.start_gateway(
        0, name="gateway-cli", port=port, env={"API_KEYS": f"default:{hash_api_key(key)}"}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        refused, output = await _chat("hello", "--gateway", url)
        assert refused == 1 and "401" in output
        code, output = await _chat("Count my words please", "--gateway", url, "--api-key", key)
        assert code == 0, output
        assert "Final answer:" in output
    finally:
        await gateway.stop()
