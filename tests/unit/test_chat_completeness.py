"""``agentstream chat`` tells a whole stream from one that lost, doubled or changed an event."""

from __future__ import annotations

import io

import pytest

from agentstream.devstack.chat_client import RunPrinter, check_completeness
from agentstream.devstack.sse_client import SseMessage
from schemas import AgentResult, CompletenessTally, Done, Token, encode

RUN = "run_chat_check"
EVENTS = [
    SseMessage(event="token", data=encode(Token(run=RUN, n=n, text=f"t{n}")).decode(), id=str(s))
    for n, s in enumerate((3, 7, 8, 12))
]


def terminal_proving(events: list[SseMessage]) -> SseMessage:
    tally = CompletenessTally()
    for event in events:
        tally.add(int(event.id or 0), event.data.encode())
    done = Done(run=RUN, result=AgentResult(final_answer="ok"), completeness=tally.proof())
    return SseMessage(event="done", data=encode(done).decode(), id="13")


def received(events: list[SseMessage]) -> CompletenessTally:
    tally = CompletenessTally()
    for event in events:
        tally.add(int(event.id or 0), event.data.encode())
    return tally


def test_a_whole_stream_is_confirmed() -> None:
    out = io.StringIO()
    assert check_completeness(terminal_proving(EVENTS), received(EVENTS), RunPrinter(out))
    assert "✓ all 4 events received" in out.getvalue()


@pytest.mark.parametrize(
    "got",
    [
        EVENTS[:2] + EVENTS[3:],
        EVENTS + EVENTS[-1:],
        [EVENTS[1], EVENTS[0], *EVENTS[2:]],
        [*EVENTS[:3], SseMessage(event="token", data=EVENTS[3].data.replace("t3", "t4"), id="12")],
    ],
    ids=["lost", "doubled", "reordered", "changed"],
)
def test_a_damaged_stream_is_reported(got: list[SseMessage]) -> None:
    out = io.StringIO()
    assert not check_completeness(terminal_proving(EVENTS), received(got), RunPrinter(out))
    assert "✗ incomplete stream" in out.getvalue()
