"""agentstream.runtime.temporal_codec: msgspec Structs through Temporal's payload converter."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from temporalio.api.common.v1 import Payload

from agentstream.runtime.temporal_codec import data_converter
from schemas import AgentResult, ChatInput, SandboxInfo, SqlQuery, ToolCall, Usage
from worker.activities import CallAgentInput, TerminalInput

converter = data_converter.payload_converter

RESULT = AgentResult(
    final_answer="There are 3 users.",
    model="gpt-test",
    sql_queries=[
        SqlQuery(sql="SELECT count(*) FROM users", row_count=1, duration_ms=2.5),
        SqlQuery(sql="SELECT oops", error="syntax error"),
    ],
    tool_calls=[ToolCall(call_id="c1", name="run_sql", input={"sql": "x", "n": [1, None]})],
    files=["report.csv"],
    usage=Usage(input_tokens=12, output_tokens=34),
    sandbox=SandboxInfo(id="run_1", backend="e2b", url="https://sb.example"),
)
CHAT = ChatInput(
    prompt="How many users?",
    conversation_id="conv_1",
    org="acme",
    callback_url="http://cb",
    connection_id="db_1",
)


def _round_trip(value: Any, type_hint: Any) -> Any:
    payloads = converter.to_payloads([value])
    assert len(payloads) == 1
    [decoded] = converter.from_payloads(payloads, [type_hint])
    return decoded


@pytest.mark.parametrize(
    ("value", "type_hint"),
    [
        (CHAT, ChatInput),
        (ChatInput(prompt="only a prompt"), ChatInput),
        (RESULT, AgentResult),
        (AgentResult(final_answer=""), AgentResult),
        (CallAgentInput(run="run_1", chat=CHAT, sandbox=SandboxInfo(id="run_1")), CallAgentInput),
        (TerminalInput(run="run_1", outcome="done", result=RESULT), TerminalInput),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, msgspec.Struct) else "",
)
def test_structs_round_trip(value: msgspec.Struct, type_hint: type) -> None:
    decoded = _round_trip(value, type_hint)
    assert type(decoded) is type_hint
    assert decoded == value


def test_nested_structs_keep_their_types() -> None:
    decoded = _round_trip(RESULT, AgentResult)
    assert isinstance(decoded.sql_queries[0], SqlQuery)
    assert isinstance(decoded.tool_calls[0], ToolCall)
    assert isinstance(decoded.sandbox, SandboxInfo)
    assert isinstance(decoded.usage, Usage)


@pytest.mark.parametrize(
    "value", [{"a": 1, "b": [True, None, "x"], "c": {"d": 1.5}}, {}, [1, "two"], "text", 7]
)
def test_plain_json_values_round_trip(value: Any) -> None:
    assert _round_trip(value, type(value)) == value
    assert _round_trip(value, None) == value  # no type hint: plain JSON


def test_none_round_trips_as_binary_null() -> None:
    [payload] = converter.to_payloads([None])
    assert payload.metadata["encoding"] == b"binary/null"
    assert converter.from_payloads([payload], [type(None)]) == [None]


def test_bytes_keep_the_binary_converter() -> None:
    [payload] = converter.to_payloads([b"\x00raw"])
    assert payload.metadata["encoding"] == b"binary/plain"
    assert converter.from_payloads([payload], [bytes]) == [b"\x00raw"]


def test_struct_payload_is_plain_json() -> None:
    [payload] = converter.to_payloads([CHAT])
    assert payload.metadata["encoding"] == b"json/plain"
    assert msgspec.json.decode(payload.data) == {
        "prompt": "How many users?",
        "conversation_id": "conv_1",
        "org": "acme",
        "callback_url": "http://cb",
        "connection_id": "db_1",
    }


def test_cli_style_json_input_decodes_with_defaults() -> None:
    # What `temporal workflow execute --input '{"prompt": "hi"}'` sends.
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"prompt": "hi"}')
    [chat] = converter.from_payloads([payload], [ChatInput])
    assert chat == ChatInput(prompt="hi")
    assert (chat.conversation_id, chat.org, chat.callback_url, chat.connection_id) == (
        "",
        "default",
        None,
        None,
    )


def test_json_input_missing_required_field_is_rejected() -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"org": "acme"}')
    with pytest.raises(msgspec.ValidationError, match="prompt"):
        converter.from_payloads([payload], [ChatInput])


def test_several_values_convert_in_order() -> None:
    payloads = converter.to_payloads([CHAT, RESULT, None, {"k": "v"}])
    decoded = converter.from_payloads(payloads, [ChatInput, AgentResult, type(None), dict])
    assert decoded == [CHAT, RESULT, None, {"k": "v"}]
