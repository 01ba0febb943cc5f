"""schemas: the event union on the wire, its codec, and identifier validation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas import (
    AgentResult,
    BaseEvent,
    Cancelled,
    Done,
    Error,
    Event,
    Failed,
    InvalidIdError,
    Reset,
    SandboxInfo,
    SqlQuery,
    Stage,
    Status,
    Token,
    ToolCall,
    ToolEnd,
    ToolStart,
    Usage,
    decode_event,
    decode_event_batch,
    encode,
    event_type,
    is_terminal,
    is_valid_id,
    require_id,
)

_COMMON: dict[str, Any] = {
    "run": "run_01ABC",
    "attempt": 3,
    "ts": 1_700_000_000_123_456_789,
    "n": 42,
}

_RESULT = AgentResult(
    final_answer="42 rows",
    model="gpt-test",
    sql_queries=[SqlQuery(sql="SELECT 1", row_count=1, duration_ms=1.5, error="slow")],
    tool_calls=[ToolCall(call_id="c1", name="sql", input={"q": [1, 2]}, output="ok", error="e")],
    files=["a.py", "dir/b.txt"],
    usage=Usage(input_tokens=10, output_tokens=20),
    sandbox=SandboxInfo(id="sb_1", backend="e2b", url="https://sb.example"),
)

# One instance of every class in the Event union, every field away from its default.
ALL_EVENTS: list[BaseEvent] = [
    Status(
        **_COMMON,
        stage=Stage.SANDBOX_READY,
        sandbox_id="sb_1",
        sandbox_url="https://sb.example",
        model="gpt-test",
        detail="ready",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    ),
    Token(**_COMMON, text="héllo\nwörld 🎉"),
    ToolStart(**_COMMON, call_id="call_1", name="run_sql", input={"sql": "SELECT 1", "n": [1.5]}),
    ToolEnd(**_COMMON, call_id="call_1", name="run_sql", output="1 row", error="boom"),
    Reset(**_COMMON, reason="attempt 3"),
    Error(**_COMMON, message="careful"),
    Done(**_COMMON, result=_RESULT),
    Failed(**_COMMON, reason="timed out"),
    Cancelled(**_COMMON, reason="user"),
]


def test_every_union_member_has_a_sample() -> None:
    assert {type(e) for e in ALL_EVENTS} == set(Event.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trips_unchanged(event: BaseEvent) -> None:
    decoded = decode_event(encode(event))
    assert type(decoded) is type(event)
    assert decoded == event


def test_encoded_event_carries_type_tag_and_common_fields() -> None:
    raw = msgspec.json.decode(encode(ALL_EVENTS[1]))
    assert raw["type"] == "token"
    assert {k: raw[k] for k in _COMMON} == _COMMON


def test_decode_event_batch_accepts_single_object() -> None:
    event = ALL_EVENTS[0]
    assert decode_event_batch(encode(event)) == [event]


def test_decode_event_batch_accepts_array_in_order() -> None:
    assert decode_event_batch(encode(ALL_EVENTS)) == ALL_EVENTS


def test_decode_event_batch_accepts_empty_array() -> None:
    assert decode_event_batch(b"[]") == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "nope", "run": "r"}',
        b'[{"type": "token", "run": "r", "text": "a"}, {"type": "nope", "run": "r"}]',
        b'{"run": "r", "text": "a"}',  # no tag at all
    ],
    ids=["unknown-type", "unknown-type-in-array", "missing-type"],
)
def test_decode_rejects_unknown_or_missing_type(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event_batch(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "token", "run": "r"}',  # text missing
        b'{"type": "token", "text": "a"}',  # run missing
        b'{"type": "failed", "run": "r"}',  # reason missing
        b'{"type": "done", "run": "r"}',  # result missing
        b'{"type": "tool_start", "run": "r", "name": "x"}',  # call_id missing
    ],
)
def test_decode_rejects_missing_required_field(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "token", "run": "r", "text": 5}',
        b'{"type": "token", "run": 1, "text": "a"}',
        b'{"type": "token", "run": "r", "text": "a", "attempt": "1"}',
        b'{"type": "token", "run": "r", "text": "a", "n": 1.5}',
        b'{"type": "status", "run": "r", "stage": "flying"}',
        b'{"type": "status", "run": "r", "stage": "queued", "trace_id": "not-a-trace"}',
        b'{"type": "tool_start", "run": "r", "call_id": "c", "name": "x", "input": [1]}',
        b'{"type": "done", "run": "r", "result": {"final_answer": 1}}',
    ],
)
def test_decode_rejects_wrong_types(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event_batch(body)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'[{"type": "token"'])
def test_decode_rejects_malformed_json(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event_batch(body)


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    body = b'{"type": "token", "run": "r", "text": "hi", "future": {"x": [1, 2]}, "v2": true}'
    event = decode_event(body)
    assert isinstance(event, Token)
    assert (event.run, event.text) == ("r", "hi")


def test_missing_optional_fields_take_defaults() -> None:
    event = decode_event(b'{"type": "status", "run": "r", "stage": "queued"}')
    assert isinstance(event, Status)
    assert event.stage is Stage.QUEUED
    assert (event.attempt, event.n, event.sandbox_id, event.detail) == (1, 0, None, "")
    assert event.trace_id is None
    assert event.ts > 0


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_is_terminal_only_for_done_failed_cancelled(event: BaseEvent) -> None:
    assert is_terminal(event) is isinstance(event, Done | Failed | Cancelled)


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_event_type_matches_wire_tag(event: BaseEvent) -> None:
    assert event_type(event) == msgspec.json.decode(encode(event))["type"]


def test_event_type_names() -> None:
    assert [event_type(e) for e in ALL_EVENTS] == [
        "status",
        "token",
        "tool_start",
        "tool_end",
        "reset",
        "error",
        "done",
        "failed",
        "cancelled",
    ]


# Round-trip property over awkward Token text and ToolStart input (hypothesis is not installed).
_TEXTS = [
    "",
    " ",
    "plain",
    "multi\nline\r\nwith\ttabs",
    'quotes " and \\ backslashes',
    "nul \x00 and controls \x01\x1f\x7f",
    "unicode é ß 漢字 🎉 \u2028\u2029",
    "</script><script>alert(1)</script>",
    "x" * 100_000,
]

_INPUTS: list[dict[str, Any]] = [
    {},
    {"sql": "SELECT * FROM t WHERE a = 'x'"},
    {"nested": {"deep": {"deeper": [1, [2, [3, {"k": None}]]]}}},
    {"bools": [True, False], "none": None},
    {"ints": [0, -1, 2**63 - 1, -(2**63), 2**64]},
    {"floats": [0.1, -2.5e-300, 1e308, 3.141592653589793]},
    {"unicode ключ 🎉": "значение", "": "empty key"},
    {"s": '\x00\n\r\t"\\'},
]


@pytest.mark.parametrize("text", _TEXTS, ids=range(len(_TEXTS)))
def test_token_text_round_trips(text: str) -> None:
    event = Token(run="r", text=text)
    assert decode_event(encode(event)) == event
    assert decode_event_batch(encode([event, event])) == [event, event]


@pytest.mark.parametrize("tool_input", _INPUTS, ids=range(len(_INPUTS)))
def test_tool_start_input_round_trips(tool_input: dict[str, Any]) -> None:
    event = ToolStart(run="r", call_id="c", name="tool", input=tool_input)
    decoded = decode_event(encode(event))
    assert isinstance(decoded, ToolStart)
    assert decoded.input == tool_input


# Identifiers


@pytest.mark.parametrize("value", ["run_01ABC", "a-b_c", "x" * 64, "a", "0", "-", "_"])
def test_valid_ids_are_accepted(value: str) -> None:
    assert is_valid_id(value)
    assert require_id("run", value) == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * 65, "a.b", "*", ">", "a b", " a", "a\n", "\t", "runé", "ран", "a/b", "a:b"],
)
def test_invalid_ids_are_rejected(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidIdError) as info:
        require_id("org", value)
    assert info.value.kind == "org"
    assert info.value.value == value
    assert isinstance(info.value, ValueError)
