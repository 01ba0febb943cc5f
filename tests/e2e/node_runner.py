"""Node test suites run against the stack: a command's output, and a TAP report checked whole."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from agentstream.devstack.stack import LocalStack
from tests.commands import run_to_end

_RUN_TIMEOUT_S = 600


async def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command``; its combined output, after asserting it exited 0."""
    code, text = await run_to_end(*command, timeout_s=_RUN_TIMEOUT_S, cwd=cwd, env=env)
    assert code == 0, f"{' '.join(command)} exited {code}:\n{text}"
    return text


async def node_tests(
    stack: LocalStack, *paths: str, cwd: Path, env: dict[str, str] | None = None
) -> str:
    """The TAP report of ``node --test`` over ``paths`` in ``cwd``, against the stack.

    The tests find the gateways in ``AGENTSTREAM_GATEWAYS`` and, in ``AGENTSTREAM_SLOW_ORG``, an
    org served by an agent of its own whose runs last seconds (still going when a test cuts or
    cancels them); ``env`` adds to that.
    """
    slow_org = f"nodeslow{uuid.uuid4().hex[:8]}"
    async with stack.dedicated_agent(slow_org, env={"SCRIPTED_TOKEN_DELAY_S": "0.03"}):
        full_env = {
            **os.environ,
            "AGENTSTREAM_GATEWAYS": ",".join(stack.gateway_urls),
            "AGENTSTREAM_SLOW_ORG": slow_org,
            **(env or {}),
        }
        return await run("node", "--test", "--test-reporter=tap", *paths, cwd=cwd, env=full_env)


def _count(tap: str, what: str) -> int:
    found = re.search(rf"^# {what} (\d+)$", tap, re.MULTILINE)
    assert found, f"no '# {what}' line in:\n{tap}"
    return int(found.group(1))


def assert_all_passed(tap: str, tests: int, names: Iterable[str]) -> None:
    """Assert that the report ran ``tests`` tests, every one passed (none skipped), and that
    a passed test's name ends with each of ``names``."""
    assert _count(tap, "tests") == tests, tap
    assert _count(tap, "pass") == tests, tap
    assert _count(tap, "fail") == 0, tap
    assert _count(tap, "skipped") == 0, tap
    for name in names:
        assert re.search(rf"^ok \d+ - .*{re.escape(name)}", tap, re.MULTILINE), (name, tap)
