"""One client's view of a conversation: every run of it, in order, each run's events in turn.

The runs are the conversation's index (``agentstream.runtime.conversation_index``); each run is
streamed as ``GET /api/stream/{run}`` streams it (``gateway.run_stream.stream_run``: history,
then live, once each, in order) up to its terminal event, then the next run's follow. After the
last known run's terminal event, the stream waits for the next run: live on the index's
republished records, re-reading the index after each quiet ``idle_check_s`` in case one was
missed.

**Event IDs.** An event's ID on this stream is ``<record>-<event>``: the stream sequence of its
run's index record, then its event ID on the run's own stream. Before a run's events comes one
``run`` event (``{"run", "prompt", "ts"}``, ID ``<record>-0``) saying which run and which
question follow. Resuming after ``R-E`` streams run ``R``'s events after ``E`` (``R-0``: all of
them, without the ``run`` event again), then every later run; with no ID, the stream starts at
the conversation's first run still kept (the stream's max age).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import NamedTuple

import msgspec
from nats.aio.msg import Msg

from agentstream.runtime import conversation_index
from agentstream.runtime.conversation_index import IndexedRun
from agentstream.runtime.http import BadRequest
from agentstream.runtime.nats_contract import conversation_live_subject
from gateway.live_hub import do_nothing
from gateway.run_stream import stream_run
from gateway.sse_frames import Frame
from gateway.state import GatewayState
from schemas import TERMINAL_EVENT_TYPES, message_seq

RUN_EVENT = "run"

_POSITION = re.compile(r"(\d{1,20})-(\d{1,20})")


class Position(NamedTuple):
    """Where a conversation stream resumes: after event ``event`` of the run whose index record
    is at sequence ``record`` (``event`` 0: before the run's first event). ``record`` 0: from
    the start."""

    record: int
    event: int


START = Position(0, 0)


def parse_position(raw: str | None) -> Position:
    """The position a ``Last-Event-ID`` of this stream names; 400 for anything else."""
    if raw is None or raw == "":
        return START
    match = _POSITION.fullmatch(raw) if raw.isascii() else None
    if match is None:
        raise BadRequest("Last-Event-ID must be a conversation event ID: <record>-<event>")
    return Position(int(match[1]), int(match[2]))


class _RunAnnounced(msgspec.Struct, frozen=True):
    run: str
    prompt: str
    ts: int


def _announcement(indexed: IndexedRun) -> Frame:
    data = msgspec.json.encode(_RunAnnounced(indexed.run, indexed.prompt, indexed.ts))
    wire = b"id: %d-0\nevent: %b\ndata: %b\n\n" % (indexed.seq, RUN_EVENT.encode(), data)
    return Frame(0, 0, 0, False, wire)


def _relabelled(frame: Frame, record: int) -> Frame:
    """The frame with its ID put in the conversation's form."""
    rest = frame.wire[frame.wire.index(b"\n") :]
    return frame._replace(wire=b"id: %d-%d%b" % (record, frame.id, rest))


async def stream_conversation(
    gw: GatewayState,
    org: str,
    conversation: str,
    *,
    after: Position,
    tick_s: float,
    on_cut: Callable[[], object] = do_nothing,
    on_run_idle: Callable[[str], Callable[[], Awaitable[None]]] | None = None,
) -> AsyncGenerator[list[Frame], None]:
    """Every event of the conversation's runs after ``after``, in order; never ends by itself.

    Yields non-empty batches, and an empty one after each ``tick_s`` without events (for
    keepalives). ``on_run_idle(run)`` is the ``on_idle`` of each run's stream (noticing a run
    that closed without its terminal event).
    """
    settings = gw.settings
    arrived = asyncio.Event()

    async def on_record(_: Msg) -> None:
        arrived.set()

    # In place before the index is read: a record stored meanwhile still wakes the stream.
    subscription = await gw.nc.subscribe(conversation_live_subject(org, conversation), cb=on_record)
    try:
        await gw.nc.flush()
        # The record read up to; the resumed run's is read again.
        read_up_to = max(after.record - 1, 0)
        while True:
            arrived.clear()
            for indexed in await _records(gw, org, conversation, read_up_to):
                read_up_to = indexed.seq
                resumed = indexed.seq == after.record
                if resumed and await _ended_by(gw, org, indexed.run, after.event):
                    continue
                if not resumed:
                    yield [_announcement(indexed)]
                runs = stream_run(
                    gw.hub,
                    gw.history,
                    org,
                    indexed.run,
                    after=after.event if resumed else 0,
                    idle_check_s=settings.sse_idle_check_s,
                    tick_s=tick_s,
                    on_cut=on_cut,
                    on_idle=on_run_idle(indexed.run) if on_run_idle is not None else None,
                )
                async with contextlib.aclosing(runs) as batches:
                    async for batch in batches:
                        yield [_relabelled(frame, indexed.seq) for frame in batch]
            # Every known run has ended: wait for the next one.
            loop = asyncio.get_running_loop()
            quiet_until = loop.time() + settings.sse_idle_check_s
            while not arrived.is_set() and loop.time() < quiet_until:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), tick_s)
                if not arrived.is_set():
                    yield []
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _ended_by(gw: GatewayState, org: str, run: str, event: int) -> bool:
    """Whether ``run``'s terminal event is ``event`` or before it: a stream resumed there goes
    on with the next run (a run's stream waits for a terminal event still to come)."""
    last = await gw.history.last_event(org, run)
    return last is not None and last.type in TERMINAL_EVENT_TYPES and message_seq(event) >= last.seq


async def _records(
    gw: GatewayState, org: str, conversation: str, after_seq: int
) -> list[IndexedRun]:
    """The conversation's runs recorded after sequence ``after_seq``, read whole before any is
    streamed (a run may stream for minutes; no read stays open meanwhile)."""
    found: list[IndexedRun] = []
    async with contextlib.aclosing(
        conversation_index.records(gw.nc, org, conversation, after_seq=after_seq)
    ) as records:
        async for indexed in records:
            found.append(indexed)
    return found
