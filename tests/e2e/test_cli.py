"""The ``agentstream chat`` command as a user runs it, against open and secured gateways."""

from __future__ import annotations

import asyncio
import re
import sys

from agentstream.devstack.stack import LocalStack
from gateway.auth import hash_api_key
from tests.stacks import extra_gateway

# What asyncio logs when a generator left suspended over an open HTTP stream is finalised at
# exit, racing the generators it runs inside.
_UNCLOSED_GENERATOR = "error occurred during closing of asynchronous generator"


async def _chat(*args: str) -> tuple[int, str]:
    """Run ``agentstream chat`` as a user does: its exit code and stdout; stderr must be clean."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream",
        "chat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        output, errors = await process.communicate()
    code = await process.wait()
    stderr = errors.decode()
    assert _UNCLOSED_GENERATOR not in stderr, stderr
    assert not re.search(r"\bERROR\b|Traceback", stderr), stderr
    return code, output.decode()


async def test_chat_prints_the_run_live_and_exits_zero_on_done(stack: LocalStack) -> None:
    code, output = await _chat("Count my words please", "--gateway", stack.gateway_urls[0])
    assert code == 0, output
    assert "· agent_started (offline-scripted)" in output
    assert "→ write_file" in output and "← run_command" in output
    assert "Final answer:" in output and "words: 4" in output
    assert re.search(r"✓ all \d+ events received \(sha256 [0-9a-f]{12}…\)", output), output


async def test_chat_sends_its_api_key_to_a_secured_gateway(stack: LocalStack) -> None:
    key = "cli-test-key-0123456789abcdef"
    keys = {"API_KEYS": f"default:{hash_api_key(key)}"}
    async with extra_gateway(stack, "gateway-cli", keys) as url:
        refused, output = await _chat("hello", "--gateway", url)
        assert refused == 1 and "401" in output
        code, output = await _chat("Count my words please", "--gateway", url, "--api-key", key)
        assert code == 0, output
        assert "Final answer:" in output


async def test_chat_ends_a_slowly_streamed_run_cleanly(stack: LocalStack) -> None:
    # Tokens trickle in, so the client is following live, mid-connection, when the terminal
    # event arrives and it returns: the open stream must be closed then, not at interpreter exit.
    async with stack.dedicated_agent("slowcli", env={"SCRIPTED_TOKEN_DELAY_S": "0.05"}):
        code, output = await _chat(
            "Count my words please", "--gateway", stack.gateway_urls[0], "--org", "slowcli"
        )
    assert code == 0, output
    assert "Final answer:" in output and "words: 4" in output
