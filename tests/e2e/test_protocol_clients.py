"""The AI SDK's and AG-UI's own client packages read a gateway's protocol streams.

``tests/js/protocols`` (pinned ``ai``, ``@ag-ui/client``, ``@ag-ui/core``; installed by the
Makefile's stamp with ``npm ci``) runs ``node --test`` against the stack: ``useChat``'s chat
(``AbstractChat`` + ``DefaultChatTransport``) renders a run and resumes it after a reload through
the reconnect route, ``readUIMessageStream`` reads the run-keyed stream, ``HttpAgent`` runs the
agent with its event order verified, and both clients end a cancelled run cleanly. A retried
attempt cannot be provoked on demand in the stack, so the gateway's own translators write a run
with a ``reset`` to fixture files, which the real clients read: what a retry sends is checked
against the packages too. Every Node test must run and pass: none skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

from agentstream.devstack.stack import LocalStack
from gateway.protocols import Translator, sse_data
from gateway.protocols.ag_ui import AgUiStream
from gateway.protocols.ai_sdk import DONE, UiMessageStream
from schemas import AgentResult, Done, Event, Reset, Stage, Status, Token, ToolEnd, ToolStart

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "tests" / "js" / "protocols"
STAMP = "tests/js/protocols/node_modules/.installed"
NODE_TESTS = {
    "ai_sdk.test.mjs": (
        "useChat's Chat renders a run",
        "GET /api/runs/{run}/ui-stream read by readUIMessageStream is the same message",
        "a reloaded page resumes the running run through GET {api}/{id}/stream",
        "a chat with no run answers 204 to the reconnect",
        "a cancelled run ends the message with abort and finish",
        "a reset (retried attempt) leaves the void attempt in a step of its own",
    ),
    "ag_ui.test.mjs": (
        "HttpAgent runs the agent: verified order",
        "a retried post with the same runId gets the same run",
        "GET /api/runs/{run}/ag-ui passes the client's own parsing and verification",
        "a run cancelled mid-message ends with RUN_FINISHED",
        "a reset (retried attempt) drops the void messages",
    ),
}
_RUN_TIMEOUT_S = 600
RUN = "run_fixture_reset"
ROWS = '{"columns":["provinsi","n"],"rows":[["Aceh",3]],"row_count":1,"truncated":false}'


def retried_run() -> list[Event]:
    """A run whose first attempt died mid-tool-call, and whose second attempt answered."""
    query = {"query": "SELECT provinsi, count(*) AS n FROM koperasi.koperasi GROUP BY 1"}
    call = {"call_id": "call_run_sql_1", "name": "run_sql"}
    return [
        Status(run=RUN, stage=Stage.QUEUED),
        Status(run=RUN, stage=Stage.AGENT_STARTED),
        Token(run=RUN, text="First try: "),
        ToolStart(run=RUN, input=query, **call),
        Token(run=RUN, text="(lost)"),
        Reset(run=RUN, attempt=2, reason="the agent call was retried"),
        Status(run=RUN, attempt=2, stage=Stage.AGENT_STARTED),
        Token(run=RUN, attempt=2, text="Second try: "),
        ToolStart(run=RUN, attempt=2, input=query, **call),
        ToolEnd(run=RUN, attempt=2, output=ROWS, **call),
        Token(run=RUN, attempt=2, text="Aceh has 3."),
        Done(run=RUN, attempt=2, result=AgentResult(final_answer="Aceh has 3.")),
    ]


def _translated(translator: Translator, events: list[Event]) -> bytes:
    parts = translator.start()
    for event in events:
        parts += translator.translate(event)
    return sse_data(parts)


def write_fixtures(directory: Path) -> None:
    """The retried run as each protocol's stream, as the gateway would send it."""
    events = retried_run()
    ai_sdk = _translated(UiMessageStream(RUN), events) + DONE
    (directory / "ai_sdk_reset.sse").write_bytes(ai_sdk)
    user = {"id": "user-1", "role": "user", "content": "Berapa koperasi di Aceh?"}
    ag_ui = AgUiStream("thread-reset", "client-run", RUN, input_messages=[user])
    (directory / "ag_ui_reset.sse").write_bytes(_translated(ag_ui, events))


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


async def test_the_ai_sdk_and_ag_ui_clients_read_the_gateways_streams(
    stack: LocalStack, tmp_path: Path
) -> None:
    await _run("make", "--no-print-directory", STAMP, cwd=REPO)
    write_fixtures(tmp_path)
    slow_org = f"protoslow{uuid.uuid4().hex[:8]}"
    async with stack.dedicated_agent(slow_org, env={"SCRIPTED_TOKEN_DELAY_S": "0.03"}):
        env = {
            **os.environ,
            "AGENTSTREAM_GATEWAYS": ",".join(stack.gateway_urls),
            "AGENTSTREAM_SLOW_ORG": slow_org,
            "AGENTSTREAM_PROTOCOL_FIXTURES": str(tmp_path),
        }
        tap = await _run("node", "--test", "--test-reporter=tap", *NODE_TESTS, cwd=CLIENTS, env=env)

    expected = sum(len(names) for names in NODE_TESTS.values())
    assert _count(tap, "tests") == expected, tap
    assert _count(tap, "pass") == expected, tap
    assert _count(tap, "fail") == 0, tap
    assert _count(tap, "skipped") == 0, tap
    for names in NODE_TESTS.values():
        for name in names:
            assert re.search(rf"^ok \d+ - {re.escape(name)}", tap, re.MULTILINE), (name, tap)
