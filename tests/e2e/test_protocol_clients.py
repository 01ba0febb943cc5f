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

from pathlib import Path

from agentstream.devstack.stack import LocalStack
from gateway.protocols import Translator, sse_data
from gateway.protocols.ag_ui import AgUiStream
from gateway.protocols.ai_sdk import DONE, UiMessageStream
from schemas import AgentResult, Done, Event, Reset, Stage, Status, Token, ToolEnd, ToolStart
from tests.e2e.node_runner import assert_all_passed, node_tests, run

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


async def test_the_ai_sdk_and_ag_ui_clients_read_the_gateways_streams(
    stack: LocalStack, tmp_path: Path
) -> None:
    await run("make", "--no-print-directory", STAMP, cwd=REPO)
    write_fixtures(tmp_path)
    env = {"AGENTSTREAM_PROTOCOL_FIXTURES": str(tmp_path)}
    tap = await node_tests(stack, *NODE_TESTS, cwd=CLIENTS, env=env)
    names = [name for suite in NODE_TESTS.values() for name in suite]
    assert_all_passed(tap, len(names), names)
