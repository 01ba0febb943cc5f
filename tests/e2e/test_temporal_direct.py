"""Runs started through Temporal directly (not ``POST /api/messages``) stream like any other.

Covers the two ways the README documents: ``examples/temporal_e2e.py`` (a Python Temporal client)
and the ``temporal workflow execute`` command line.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path

import httpx

from agentstream.devstack.stack import LocalStack, binary_path
from tests.commands import run_to_end
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete, read_whole_run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "temporal_e2e.py"
SAMPLE_PROMPT = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
# The example bounds itself to 120 s; this bounds the example.
EXAMPLE_TIMEOUT_S = 150.0
EXPECTED_PASS_LINES = (
    "PASS: workflow completed",
    "PASS: stream ended with done",
    "PASS: final_answer non-empty",
    "PASS: sql_queries non-empty",
    "PASS: all checks for run_e2e_",
)


async def test_example_script_passes_twice_in_a_row(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    argv = [
        sys.executable,
        str(EXAMPLE),
        "--temporal",
        stack.temporal_address,
        "--gateway",
        gateway,
    ]
    runs: list[str] = []
    for attempt in (1, 2):
        code, out = await run_to_end(*argv, timeout_s=EXAMPLE_TIMEOUT_S, cwd=REPO)
        assert code == 0, f"run {attempt} exited {code}:\n{out}"
        for line in EXPECTED_PASS_LINES:
            assert line in out, f"run {attempt} lacks {line!r}:\n{out}"
        assert "FAIL" not in out, out
        started = re.search(
            r"^started ChatWorkflow (run_e2e_[0-9a-f]{32}) on agent-default", out, re.M
        )
        assert started, out
        runs.append(started.group(1))
        # What it printed happened: the gateway knows the run as completed, with SQL in it.
        view = (await http.get(f"{gateway}/api/runs/{started.group(1)}")).json()
        assert view["status"] == "completed", view
        assert view["result"]["final_answer"].strip()
        assert view["result"]["sql_queries"], view["result"]
        assert view["result"]["final_answer"] in out, "the script printed the stored answer"
    assert runs[0] != runs[1], "every run gets a fresh workflow ID"


def _cli_execute_argv(stack: LocalStack, workflow_id: str, gateway: str) -> list[str]:
    """The README's ``temporal workflow execute`` command, pointed at the test stack."""
    chat = {"prompt": SAMPLE_PROMPT, "callback_url": gateway}
    return [
        binary_path("temporal"),
        "workflow",
        "execute",
        "--address",
        stack.temporal_address,
        "--namespace",
        "default",
        "--type",
        "ChatWorkflow",
        "--task-queue",
        "agent-default",
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps(chat, ensure_ascii=False),
    ]


async def test_temporal_cli_execute_streams_over_sse_and_prints_the_result(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    callback_gateway, reading_gateway = stack.gateway_urls
    run = f"run_cli_{uuid.uuid4().hex}"
    proc = await asyncio.create_subprocess_exec(
        *_cli_execute_argv(stack, run, callback_gateway),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout = proc.stdout
    assert stdout is not None
    try:
        # The CLI prints the execution (with its RunId) once Temporal accepted the start; from
        # then on the gateway knows the run and streams it.
        head: list[str] = []

        async def read_head() -> None:
            async for raw in stdout:
                head.append(raw.decode(errors="replace"))
                if head[-1].strip().startswith("RunId"):
                    return
            raise AssertionError(f"temporal exited before starting the run:\n{''.join(head)}")

        await asyncio.wait_for(read_head(), 30)
        assert any(run in line for line in head), head

        async def cli_rest() -> str:
            rest = await stdout.read()
            await proc.wait()
            return rest.decode(errors="replace")

        # Read the stream from the other replica while the CLI waits for the result.
        messages, rest = await asyncio.wait_for(
            asyncio.gather(read_whole_run(http, reading_gateway, run), cli_rest()),
            RUN_TIMEOUT_S,
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    output = "".join(head) + rest
    assert proc.returncode == 0, output

    assert_complete(messages)
    assert messages[-1].event == "done", [m.event for m in messages]
    assert {m.json()["run"] for m in messages} == {run}
    stages = [m.json()["stage"] for m in messages if m.event == "status"]
    assert "agent_started" in stages and stages[-1] == "saving", stages
    assert {"token", "tool_start", "tool_end"} <= {m.event for m in messages}
    streamed = messages[-1].json()["result"]
    assert streamed["final_answer"].strip()
    assert streamed["model"] == "offline-scripted"
    assert [q["row_count"] for q in streamed["sql_queries"]] == [5], streamed["sql_queries"]

    assert re.search(r"^\s*Status\s+COMPLETED\s*$", output, re.M), output
    result_line = re.search(r"^\s*Result\s+(\{.*\})\s*$", output, re.M)
    assert result_line, output
    printed = json.loads(result_line.group(1))
    assert printed["final_answer"] == streamed["final_answer"]
    assert printed["sql_queries"] == streamed["sql_queries"]


async def test_cli_input_without_callback_url_uses_the_workers_gateway(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    """``callback_url`` is optional: the worker falls back to its ``GATEWAY_URL``."""
    run = f"run_cli_{uuid.uuid4().hex}"
    argv = _cli_execute_argv(stack, run, stack.gateway_urls[0])
    argv[-1] = json.dumps({"prompt": SAMPLE_PROMPT})
    code, out = await run_to_end(*argv, timeout_s=RUN_TIMEOUT_S, cwd=REPO)
    assert code == 0, out
    messages = await read_whole_run(http, stack.gateway_urls[1], run)
    assert_complete(messages)
    assert messages[-1].event == "done"
    assert messages[-1].json()["result"]["sql_queries"]
    assert "agent_started" in [m.json().get("stage") for m in messages]
