"""Several events in one stored message: what goes in comes out, and a damaged one is refused."""

from __future__ import annotations

import pytest

from agentstream.runtime.nats_contract import (
    EVENT_COUNT_HEADER,
    EVENT_TYPE_HEADER,
    MalformedEnvelope,
    events_of,
    pack,
    unpack,
)
from schemas import Token, encode, event_id, message_seq


def test_packed_events_come_back_in_order_byte_for_byte() -> None:
    datas = [encode(Token(run="r", n=n, text=f'line {n}\n"quoted"')) for n in range(5)]
    headers, data = pack(["token"] * 4 + ["tool_start"], datas)
    assert unpack(headers, data) == list(zip(["token"] * 4 + ["tool_start"], datas, strict=True))


def test_a_message_without_the_count_holds_one_event() -> None:
    assert unpack({EVENT_TYPE_HEADER: "done"}, b'{"type":"done"}') == [("done", b'{"type":"done"}')]


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


def test_event_ids_follow_stream_order_across_and_within_messages() -> None:
    headers, data = pack(["token"] * 3, [b"{}"] * 3)
    first = events_of(7, 0, headers, data)
    later = events_of(8, 7, {EVENT_TYPE_HEADER: "token"}, b"{}")
    ids = [e.id for e in first + later]
    assert ids == [7000, 7001, 7002, 8000] == sorted(ids)
    assert {message_seq(i) for i in ids[:3]} == {7} and event_id(8) == ids[3]
