"""The NATS contract: subjects, producers, headers, several events in one message, and stored
messages read back as events."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from agentstream.runtime.nats_contract import (
    EVENT_COUNT_HEADER,
    EVENT_TYPE_HEADER,
    EXPECTED_LAST_SUBJECT_SEQ,
    AppendBusy,
    AppendError,
    LastEvent,
    LastSequenceMoved,
    MalformedEnvelope,
    MsgIdParts,
    OutgoingEvent,
    Producer,
    RunSubject,
    Stored,
    conversation_live_subject,
    conversation_subject,
    event_headers,
    last_event_of,
    live_subject,
    message_headers,
    msg_id_of,
    pack,
    parse_subject,
    publish,
    publish_event,
    run_subject,
    run_subject_any_org,
    stored_events,
    unpack,
)
from gateway.raw_asgi import send_error
from schemas import InvalidIdError, Stage, Token, encode, event_id, message_seq


def test_subject_helpers() -> None:
    assert run_subject("acme", "run_1") == "runs.acme.run_1"
    assert run_subject_any_org("run_1") == "runs.*.run_1"
    assert live_subject("acme", "run_1") == "live.acme.run_1"


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda: run_subject("a.b", "run_1"), "org"),
        (lambda: run_subject("acme", "run.>"), "run"),
        (lambda: run_subject_any_org("*"), "run"),
        (lambda: live_subject("acme", ">"), "run"),
        (lambda: live_subject("*", "run_1"), "org"),
    ],
)
def test_subject_helpers_reject_subject_tokens(call: Any, kind: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        call()
    assert info.value.kind == kind


def test_a_run_subject_parses_back_to_its_org_and_run() -> None:
    assert parse_subject(run_subject("acme", "run_1")) == RunSubject("acme", "run_1")
    assert parse_subject(live_subject("acme", "run_1")) == RunSubject("acme", "run_1")
    for other in ("", "runs.acme", "runs.acme.run_1.x", "other.acme.run_1", "$JS.API.INFO"):
        assert parse_subject(other) is None
    # A conversation's index records are no run's events.
    assert parse_subject(conversation_subject("acme", "run_1")) is None
    assert parse_subject(conversation_live_subject("acme", "run_1")) is None


def test_producer_names_are_the_stored_ones() -> None:
    # Stored in every message's Nats-Msg-Id and compared across a rolling deploy: never change.
    assert {p.name: str(p) for p in Producer} == {
        "AGENT": "agent",
        "TERMINAL": "terminal",
        "GATEWAY": "gateway",
        "GATEWAY_KEYED": "gateway-keyed",
        "CREATE_SANDBOX": "create_sandbox",
        "CALL_AGENT": "call_agent",
        "SAVE_MESSAGE": "save_message",
        "WORKFLOW_WAITING_FOR_AGENT": "workflow-waiting_for_agent",
        "CONVERSATION": "conversation",
        "PROBE": "probe",
    }
    assert Producer.of_stage(Stage.WAITING_FOR_AGENT) is Producer.WORKFLOW_WAITING_FOR_AGENT


def test_an_events_headers_name_its_key_type_and_attempt() -> None:
    token = Token(run="run_1", attempt=2, n=7, text="x")
    assert event_headers(token, Producer.AGENT) == {
        "Nats-Msg-Id": "run_1:agent:2:7",
        "Agentstream-Type": "token",
        "Agentstream-Attempt": "2",
    }
    assert msg_id_of(event_headers(token, Producer.CALL_AGENT)) == MsgIdParts("call_agent", 2, 7)


def test_a_message_of_several_events_names_the_last_and_counts_them() -> None:
    headers = message_headers("r", Producer.AGENT, 1, 9, ["token", "tool_start"])
    assert headers["Nats-Msg-Id"] == "r:agent:1:9"
    assert (headers[EVENT_COUNT_HEADER], headers[EVENT_TYPE_HEADER]) == ("2", "token,tool_start")


@pytest.mark.parametrize(
    "value", ["", "run", "run:agent:1", "run:agent:x:1", "run:agent:1:-1", "run:agent:1:1 "]
)
def test_a_foreign_msg_id_names_nothing(value: str) -> None:
    assert msg_id_of({"Nats-Msg-Id": value}) is None
    assert msg_id_of({}) is None


def test_packed_events_come_back_in_order_byte_for_byte() -> None:
    datas = [encode(Token(run="r", n=n, text=f'line {n}\n"quoted"')) for n in range(5)]
    types = ["token"] * 4 + ["tool_start"]
    headers = message_headers("r", Producer.AGENT, 1, 4, types)
    assert unpack(headers, pack(datas)) == list(zip(types, datas, strict=True))


def test_a_lone_event_is_stored_as_it_is() -> None:
    data = b'{"type":"done"}'
    headers = message_headers("r", Producer.TERMINAL, 1, 0, ["done"])
    assert EVENT_COUNT_HEADER not in headers and pack([data]) == data
    assert unpack(headers, data) == [("done", data)]


@pytest.mark.parametrize(
    ("headers", "data"),
    [
        ({EVENT_COUNT_HEADER: "2", EVENT_TYPE_HEADER: "token,token"}, b"[{}]"),
        ({EVENT_COUNT_HEADER: "3", EVENT_TYPE_HEADER: "token,token"}, b"[{},{}]"),
        ({EVENT_COUNT_HEADER: "2", EVENT_TYPE_HEADER: "token,token"}, b"[{},"),
    ],
)
def test_headers_and_data_that_disagree_are_refused(headers: dict[str, str], data: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        unpack(headers, data)
    with pytest.raises(ValueError):
        stored_events(_stored(7, headers, data))


def _stored(seq: int, headers: dict[str, str], data: bytes, last: int | None = None) -> Msg:
    """A stored message as a republish (with ``last``) or a direct get (without) delivers it."""
    jetstream = {"Nats-Subject": "runs.acme.r", "Nats-Sequence": str(seq)}
    if last is not None:
        jetstream["Nats-Last-Sequence"] = str(last)
    return Msg(None, subject="live.acme.r", data=data, headers={**headers, **jetstream})  # type: ignore[arg-type]


def test_event_ids_follow_stream_order_across_and_within_messages() -> None:
    headers = message_headers("r", Producer.AGENT, 1, 2, ["token"] * 3)
    first = stored_events(_stored(7, headers, pack([b"{}"] * 3)))
    later = stored_events(
        _stored(8, message_headers("r", Producer.AGENT, 1, 3, ["token"]), b"{}", 7)
    )
    ids = [e.id for e in first + later]
    assert ids == [7000, 7001, 7002, 8000] == sorted(ids)
    assert {message_seq(i) for i in ids[:3]} == {7} and event_id(8) == ids[3]
    assert [e.prev_seq for e in first + later] == [0, 0, 0, 7]
    assert [e.data for e in later] == [b"{}"] and not later[0].terminal


def test_a_message_without_jetstreams_headers_is_refused() -> None:
    with pytest.raises(KeyError):
        stored_events(Msg(None, data=b"{}", headers={EVENT_TYPE_HEADER: "token"}))  # type: ignore[arg-type]


def test_the_last_event_of_a_message_is_its_newest() -> None:
    headers = message_headers("r", Producer.AGENT, 3, 11, ["token", "tool_end"])
    assert last_event_of({**headers, "Nats-Sequence": "42"}) == LastEvent(
        seq=42, type="tool_end", attempt=3, producer="agent", n=11
    )
    foreign = {"Nats-Sequence": "5", EVENT_TYPE_HEADER: "done"}
    assert last_event_of(foreign) == LastEvent(seq=5, type="done", attempt=0, producer="", n=-1)


class _Stream:
    """A NATS client whose every request JetStream answers with ``answer`` (or fails with it)."""

    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def request(
        self, subject: str, data: bytes, *, timeout: float, headers: dict[str, str]
    ) -> Msg:
        self.sent.append((subject, data, headers))
        if isinstance(self.answer, Exception):
            raise self.answer
        return Msg(None, data=json.dumps(self.answer).encode())  # type: ignore[arg-type]


def _refusal(code: int, err_code: int) -> dict[str, Any]:
    return {"error": {"code": code, "err_code": err_code, "description": "no"}}


async def test_a_publish_is_a_request_on_the_runs_subject_answered_with_its_sequence() -> None:
    stream = _Stream({"stream": "RUNS", "seq": 12})
    nc = cast(NATS, stream)
    token = Token(run="r", n=3, text="x")
    assert await publish_event(nc, "acme", token, producer=Producer.AGENT) == 12
    message = OutgoingEvent(b"{}", message_headers("r", Producer.AGENT, 1, 4, ["token"]))
    assert await publish(nc, "acme", "r", message, expected_last=12) == Stored(12)
    (subject, data, headers), (_, _, conditional) = stream.sent
    assert (subject, data) == ("runs.acme.r", encode(token))
    assert headers == event_headers(token, Producer.AGENT)
    assert conditional == {**message.headers, EXPECTED_LAST_SUBJECT_SEQ: "12"}


async def test_a_message_stored_before_is_answered_as_a_duplicate() -> None:
    nc = cast(NATS, _Stream({"stream": "RUNS", "seq": 7, "duplicate": True}))
    message = OutgoingEvent(b"{}", {})
    for expected_last in (None, 9):
        stored = await publish(nc, "acme", "r", message, expected_last=expected_last)
        assert stored == Stored(7, duplicate=True)


@pytest.mark.parametrize(
    ("answer", "expected_last", "error"),
    [
        (_refusal(400, 10071), 3, LastSequenceMoved),
        (_refusal(400, 10164), 3, LastSequenceMoved),
        # The same Nats-Msg-Id being stored by another request: a conditional store looks again,
        # any other is retried (and then answered as a duplicate).
        (_refusal(409, 10158), 3, LastSequenceMoved),
        (_refusal(409, 10158), None, AppendBusy),
        (_refusal(503, 10023), None, AppendBusy),
        (NatsTimeoutError(), None, AppendBusy),
        (NoRespondersError(), 3, AppendBusy),
        (_refusal(400, 10054), None, AppendError),
    ],
)
async def test_a_refusal_says_whether_to_look_again_retry_or_give_up(
    answer: dict[str, Any] | Exception, expected_last: int | None, error: type[Exception]
) -> None:
    nc = cast(NATS, _Stream(answer))
    with pytest.raises(error) as raised:
        await publish(nc, "acme", "r", OutgoingEvent(b"{}", {}), expected_last=expected_last)
    assert type(raised.value) is error


@pytest.mark.parametrize(
    ("error", "status"),
    [(AppendBusy("busy"), 503), (NatsTimeoutError(), 503), (AppendError("refused"), 500)],
)
async def test_at_the_http_edge_a_busy_stream_is_a_503_and_a_refusal_a_500(
    error: Exception, status: int
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_error(send, {"type": "http"}, error)
    assert sent[0]["status"] == status
