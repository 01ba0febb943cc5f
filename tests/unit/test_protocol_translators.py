"""The frontend-protocol translators: agentstream events in, AI SDK parts and AG-UI events out.

The real clients (the ``ai`` and ``@ag-ui/client`` packages) read these streams in
``tests/e2e/test_protocol_clients.py``; here each mapping is pinned part by part.
"""

from __future__ import annotations

import msgspec
import pytest

from agentstream.runtime.nats_contract import StoredEvent
from gateway.protocols import sse_data
from gateway.protocols.ag_ui import AgUiStream
from gateway.protocols.ag_ui import prompt_of as ag_ui_prompt
from gateway.protocols.ai_sdk import DONE, UiMessage, UiMessageStream
from gateway.protocols.ai_sdk import prompt_of as ai_sdk_prompt
from gateway.routes.translated_stream import Translated
from gateway.sse_frames import frame_of
from schemas import AgentResult, Stage, encode, event_type
from schemas import events as ev

RUN = "run_proto"
ROWS = '{"columns":["provinsi","n"],"rows":[["Aceh",3]],"row_count":1,"truncated":false}'


def _analysis(attempt: int = 1) -> list[ev.Event]:
    """An attempt of an analysis run: text, a SQL tool call and its rows, more text."""
    return [
        ev.Status(run=RUN, attempt=attempt, stage=Stage.AGENT_STARTED, model="offline-scripted"),
        ev.Token(run=RUN, attempt=attempt, text="Looking"),
        ev.Token(run=RUN, attempt=attempt, text=" it up."),
        ev.ToolStart(run=RUN, attempt=attempt, call_id="c1", name="run_sql", input={"query": "q"}),
        ev.ToolEnd(run=RUN, attempt=attempt, call_id="c1", name="run_sql", output=ROWS),
        ev.Token(run=RUN, attempt=attempt, text="Aceh: 3"),
    ]


def _done(attempt: int = 1, answer: str = "Aceh: 3") -> ev.Done:
    return ev.Done(run=RUN, attempt=attempt, result=AgentResult(final_answer=answer))


def _ai_sdk(events: list[ev.Event]) -> list[dict[str, object]]:
    stream = UiMessageStream(RUN)
    parts = stream.start()
    for event in events:
        parts += stream.translate(event)
    return parts


def _types(parts: list[dict[str, object]]) -> list[object]:
    return [part["type"] for part in parts]


def test_ai_sdk_a_run_is_one_message_of_text_tool_and_data_parts() -> None:
    queued = ev.Status(run=RUN, stage=Stage.QUEUED)
    parts = _ai_sdk([queued, *_analysis(), _done()])
    assert _types(parts) == [
        "start",
        "start-step",
        "data-status",
        "data-status",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
        "data-sql",
        "text-start",
        "text-delta",
        "text-end",
        "data-result",
        "finish-step",
        "finish",
    ]
    assert parts[0] == {"type": "start", "messageId": RUN, "messageMetadata": {"run": RUN}}
    # One status part, replaced in place by each status (same ID).
    assert parts[2] == {
        "type": "data-status",
        "id": "status",
        "data": {"stage": "queued", "attempt": 1},
    }
    assert parts[3]["data"] == {"stage": "agent_started", "attempt": 1, "model": "offline-scripted"}
    texts = [p for p in parts if p["type"] == "text-delta"]
    assert [p["delta"] for p in texts] == ["Looking", " it up.", "Aceh: 3"]
    assert texts[0]["id"] != texts[2]["id"], "text after a tool call is a new part"
    call = {"toolCallId": "c1", "toolName": "run_sql", "dynamic": True}
    assert parts[9] == {"type": "tool-input-available", **call, "input": {"query": "q"}}
    output = msgspec.json.decode(ROWS)
    assert parts[10] == {"type": "tool-output-available", "toolCallId": "c1", "output": output}
    assert parts[11] == {"type": "data-sql", "id": "c1", "data": {"query": "q", **output}}
    assert parts[15]["data"]["final_answer"] == "Aceh: 3"
    assert parts[-1] == {
        "type": "finish",
        "finishReason": "stop",
        "messageMetadata": {"run": RUN, "outcome": "done", "attempt": 1},
    }


def test_ai_sdk_a_reset_voids_the_attempt_in_a_step_of_its_own() -> None:
    # Text, a tool call left without its output, more text still open.
    first = [*_analysis()[:4], ev.Token(run=RUN, text="meanwhile")]
    reset = ev.Reset(run=RUN, attempt=2, reason="agent crashed")
    parts = _ai_sdk([*first, reset, *_analysis(attempt=2), _done(attempt=2)])
    cut = parts.index(
        {"type": "data-reset", "id": "reset-2", "data": {"attempt": 2, "reason": "agent crashed"}}
    )
    assert _types(parts[cut - 3 : cut + 2]) == [
        "text-end",
        "tool-output-error",
        "finish-step",
        "data-reset",
        "start-step",
    ]
    assert parts[cut - 2]["errorText"] == "void: attempt 2 restarted the run"
    after = [p["delta"] for p in parts[cut:] if p["type"] == "text-delta"]
    assert after == ["Looking", " it up.", "Aceh: 3"]
    assert parts[-1]["messageMetadata"]["attempt"] == 2


def test_ai_sdk_non_fatal_errors_and_unknown_tool_ends_do_not_end_the_message() -> None:
    stray = ev.ToolEnd(run=RUN, call_id="never-started", name="run_sql", output="x")
    parts = _ai_sdk([ev.Error(run=RUN, message="slow sandbox"), stray])
    assert parts[2:] == [
        {"type": "data-error", "id": "error-1", "data": {"message": "slow sandbox", "attempt": 1}}
    ]


@pytest.mark.parametrize(
    ("terminal", "ending", "reason"),
    [
        (ev.Failed(run=RUN, reason="boom"), {"type": "error", "errorText": "boom"}, "error"),
        (ev.Cancelled(run=RUN, reason="user"), {"type": "abort", "reason": "user"}, "other"),
    ],
)
def test_ai_sdk_failed_and_cancelled_end_open_parts(
    terminal: ev.Event, ending: dict[str, str], reason: str
) -> None:
    parts = _ai_sdk([*_analysis()[:4], ev.Token(run=RUN, text="waiting"), terminal])
    assert parts[-5:] == [
        {"type": "text-end", "id": "text-2"},
        {"type": "tool-output-error", "toolCallId": "c1", "errorText": parts[-4]["errorText"]},
        ending,
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": reason,
            "messageMetadata": {"run": RUN, "outcome": event_type(terminal), "attempt": 1},
        },
    ]


def test_ai_sdk_a_done_without_streamed_text_carries_the_answer_as_text() -> None:
    parts = _ai_sdk([_done(answer="stored answer")])
    assert _types(parts[2:5]) == ["text-start", "text-delta", "text-end"]
    assert parts[3]["delta"] == "stored answer"


def _ag_ui(events: list[ev.Event], **kwargs: object) -> list[dict[str, object]]:
    stream = AgUiStream("thread-1", "client-run", RUN, **kwargs)  # type: ignore[arg-type]
    parts = stream.start()
    for event in events:
        parts += stream.translate(event)
    return parts


def test_ag_ui_a_run_nests_messages_and_tool_calls() -> None:
    queued = ev.Status(run=RUN, stage=Stage.QUEUED)
    parts = _ag_ui([queued, *_analysis(), _done()])
    assert _types(parts) == [
        "RUN_STARTED",
        "STATE_SNAPSHOT",
        "STATE_DELTA",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert parts[0] == {
        "type": "RUN_STARTED",
        "threadId": "thread-1",
        "runId": "client-run",
        "metadata": {"agentstream_run": RUN},
    }
    assert parts[1]["snapshot"] == {"status": {"stage": "queued", "attempt": 1}}
    assert parts[2]["delta"] == [
        {
            "op": "replace",
            "path": "/status",
            "value": {"stage": "agent_started", "attempt": 1, "model": "offline-scripted"},
        }
    ]
    message = parts[3]["messageId"]
    assert parts[3]["role"] == "assistant"
    call = f"{RUN}-1-c1"
    assert parts[7]["toolCallId"] == call and parts[7]["toolCallName"] == "run_sql"
    assert parts[7]["parentMessageId"] == message
    assert parts[8]["delta"] == '{"query":"q"}'
    assert parts[10]["toolCallId"] == call and parts[10]["content"] == ROWS
    assert parts[10]["role"] == "tool"
    assert parts[-1]["outcome"] == {"type": "success"}
    assert parts[-1]["result"]["final_answer"] == "Aceh: 3"
    assert all(isinstance(p.get("timestamp", 0), int) for p in parts)


def test_ag_ui_a_reset_names_the_void_output_and_restores_the_clients_messages() -> None:
    sent = [{"id": "u1", "role": "user", "content": "How many?"}]
    reset = ev.Reset(run=RUN, attempt=2, reason="retry")
    parts = _ag_ui([*_analysis()[:5], reset, _analysis(2)[1]], input_messages=sent)
    custom = next(p for p in parts if p["type"] == "CUSTOM")
    assert custom["name"] == "agentstream.reset"
    assert custom["value"] == {
        "attempt": 2,
        "reason": "retry",
        "void": {
            "messages": [f"{RUN}-1-text-1", f"{RUN}-1-result-2"],
            "tool_calls": [f"{RUN}-1-c1"],
        },
    }
    snapshot = parts[parts.index(custom) + 1]
    assert snapshot["type"] == "MESSAGES_SNAPSHOT" and snapshot["messages"] == sent
    assert parts[-2]["type"] == "TEXT_MESSAGE_START"
    assert parts[-2]["messageId"].startswith(f"{RUN}-2-")


@pytest.mark.parametrize(
    ("terminal", "last"),
    [
        (
            ev.Failed(run=RUN, reason="boom"),
            {"type": "RUN_ERROR", "message": "boom", "code": "failed"},
        ),
        (ev.Cancelled(run=RUN), {"type": "RUN_FINISHED", "outcome": {"type": "cancelled"}}),
    ],
)
def test_ag_ui_failed_and_cancelled_close_the_open_message(
    terminal: ev.Event, last: dict[str, object]
) -> None:
    parts = _ag_ui([_analysis()[1], terminal])
    assert _types(parts)[-2:] == ["TEXT_MESSAGE_END", last["type"]]
    assert {k: parts[-1][k] for k in last} == last


def test_prompts_are_the_last_user_messages_text() -> None:
    ui = [
        UiMessage(role="user", parts=[{"type": "text", "text": "first"}]),
        UiMessage(role="assistant", parts=[{"type": "text", "text": "answer"}]),
        UiMessage(
            role="user", parts=[{"type": "text", "text": "and "}, {"type": "text", "text": "then?"}]
        ),
    ]
    assert ai_sdk_prompt(ui) == "and then?"
    with pytest.raises(ValueError):
        ai_sdk_prompt([UiMessage(role="user", parts=[{"type": "file", "url": "x"}])])
    assert ag_ui_prompt([{"id": "1", "role": "user", "content": "hi"}]) == "hi"
    parts = [{"type": "text", "text": "a"}, {"type": "binary", "mimeType": "x"}]
    assert ag_ui_prompt([{"id": "1", "role": "user", "content": parts}]) == "a"
    with pytest.raises(ValueError):
        ag_ui_prompt([{"id": "1", "role": "assistant", "content": "hi"}])


def test_translated_frames_keep_their_merge_keys_and_end_after_the_terminal() -> None:
    events = [ev.Token(run=RUN, text="hi"), _done(answer="hi")]
    frames = [
        frame_of(StoredEvent(7, i, 6, event_type(e), encode(e))) for i, e in enumerate(events)
    ]
    unknown = frame_of(StoredEvent(8, 0, 7, "future", b'{"type":"future","run":"run_proto"}'))
    framing = Translated(RUN, UiMessageStream(RUN), end=DONE)
    out = framing.frames([frames[0], unknown, frames[1]])
    assert [(f.id, f.terminal) for f in out] == [(frames[0].id, False), (frames[1].id, True)]
    assert out[0].wire == sse_data(
        [
            {"type": "text-start", "id": "text-1"},
            {"type": "text-delta", "id": "text-1", "delta": "hi"},
        ]
    )
    assert out[1].wire.endswith(b"data: [DONE]\n\n")
    assert framing.opening().startswith(b'data: {"type":"start","messageId":"run_proto"')
    stored = Translated(RUN, UiMessageStream(RUN), end=DONE).stored(AgentResult(final_answer="x"))
    assert stored.count(b"data: ") == 9 and stored.endswith(DONE)
