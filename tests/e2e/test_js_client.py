"""The TypeScript client (clients/js) on the real stack: built with tsc, run by ``node --test``.

Its tests (clients/js/test) start runs, stream them to their end with the proof verified, cut
the stream mid-run and require the resumed stream to equal an uncut read, cancel a run, lose an
event on purpose and require the proof to catch it, and check the errors' types. Here the stack
is started, a slow org is added (so runs are still going when a test cuts or cancels them), and
every one of those tests must have run and passed: none skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

from agentstream.devstack.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "js"
NODE_TESTS = 31
_RUN_TIMEOUT_S = 600


async def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command``; its combined output, after asserting it exited 0."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(_RUN_TIMEOUT_S):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(command)} exited {process.returncode}:\n{text}"
    return text


def _count(tap: str, what: str) -> int:
    found = re.search(rf"^# {what} (\d+)$", tap, re.MULTILINE)
    assert found, f"no '# {what}' line in:\n{tap}"
    return int(found.group(1))


async def test_the_typescript_client_passes_its_tests_against_the_stack(stack: LocalStack) -> None:
    version = await _run("node", "--version", cwd=REPO)
    assert int(version.strip().lstrip("v").split(".")[0]) >= 20, (
        f"Node 20+ is needed, not {version}"
    )
    # npm ci once per lock file (the Makefile's stamp); the format check; a clean build of src/
    # and test/ (tsc type-checks both, the React hook included).
    await _run("make", "--no-print-directory", "clients/js/node_modules/.installed", cwd=REPO)
    await _run("npm", "run", "--silent", "lint", cwd=CLIENT)
    await _run("npm", "run", "--silent", "build", cwd=CLIENT)

    slow_org = f"jsslow{uuid.uuid4().hex[:8]}"
    async with stack.dedicated_agent(slow_org, env={"SCRIPTED_TOKEN_DELAY_S": "0.03"}):
        env = {
            **os.environ,
            "AGENTSTREAM_GATEWAYS": ",".join(stack.gateway_urls),
            "AGENTSTREAM_SLOW_ORG": slow_org,
        }
        tap = await _run("node", "--test", "--test-reporter=tap", "dist-test/", cwd=CLIENT, env=env)

    assert _count(tap, "tests") == NODE_TESTS, tap
    assert _count(tap, "pass") == NODE_TESTS, tap
    assert _count(tap, "fail") == 0, tap
    assert _count(tap, "skipped") == 0, tap
    for name in (
        "streams to done, its proof verified",
        "resumes by itself with Last-Event-ID: nothing lost, nothing twice",
        "cancelRun ends a running run's stream with cancelled",
        "fails the proof with CompletenessError",
        "with a changed byte throws CompletenessError",
        "drives useRun's state machine to done",
        "useRun under React StrictMode starts a run and renders it to done, each token once",
        "useRun's cancel() ends a slow run cancelled",
    ):
        assert re.search(rf"^ok \d+ - .*{re.escape(name)}", tap, re.MULTILINE), (name, tap)
