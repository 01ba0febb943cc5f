"""``agentstream tail``'s reader on a real JetStream: history, live, packed messages, waiting."""

from __future__ import annotations

import asyncio
import io

import pytest
from nats.aio.client import Client as NATS

from agentstream.ops.run_tail import RunNotFound, tail
from agentstream.runtime.nats_contract import (
    OutgoingEvent,
    Producer,
    message_headers,
    pack,
    publish,
    publish_event,
)
from schemas import AgentResult, Done, Token, encode, event_id


def _ids_and_types(out: io.StringIO) -> list[tuple[int, str]]:
    return [(int(line.split()[0]), line.split()[2]) for line in out.getvalue().splitlines()]


async def _tokens(producer: NATS, org: str, run: str, texts: list[str]) -> int:
    """Store the tokens as one message (as a bridge post does); its sequence."""
    tokens = [Token(run=run, n=n, text=text) for n, text in enumerate(texts)]
    message = OutgoingEvent(
        pack([encode(t) for t in tokens]),
        message_headers(run, Producer.AGENT, 1, len(tokens) - 1, ["token"] * len(tokens)),
    )
    return (await publish(producer, org, run, message)).seq


async def test_tail_waits_for_a_run_of_a_given_org_and_follows_it_to_the_end(
    connections: tuple[NATS, NATS],
) -> None:
    reader, producer = connections
    run, out = "run_tail_wait", io.StringIO()
    following = asyncio.create_task(tail(reader, run, org="acme", out=out, quiet_reread_s=0.2))
    first = await _tokens(producer, "acme", run, ["a", "b", "c"])
    second = await _tokens(producer, "acme", run, ["d"])
    done = Done(run=run, result=AgentResult(final_answer="ok"))
    last = await publish_event(producer, "acme", done, producer=Producer.TERMINAL)
    # Stored after the terminal event: never printed.
    await _tokens(producer, "acme", run, ["late"])
    await asyncio.wait_for(following, 20)
    assert _ids_and_types(out) == [
        (event_id(first, 0), "token"),
        (event_id(first, 1), "token"),
        (event_id(first, 2), "token"),
        (event_id(second, 0), "token"),
        (event_id(last, 0), "done"),
    ]


async def test_tail_from_a_sequence_without_following_prints_what_is_stored(
    connections: tuple[NATS, NATS],
) -> None:
    reader, producer = connections
    run = "run_tail_from"
    await _tokens(producer, "default", run, ["a"])
    second = await _tokens(producer, "default", run, ["b", "c"])
    out = io.StringIO()
    # The org is found from the stored events; no terminal event: it returns anyway.
    await asyncio.wait_for(tail(reader, run, from_seq=second, follow=False, out=out), 20)
    assert _ids_and_types(out) == [(event_id(second, 0), "token"), (event_id(second, 1), "token")]


async def test_a_run_with_no_stored_event_and_no_org_is_not_waited_for(
    connections: tuple[NATS, NATS],
) -> None:
    reader, _ = connections
    with pytest.raises(RunNotFound, match="pass --org"):
        await tail(reader, "run_tail_nobody", out=io.StringIO())
