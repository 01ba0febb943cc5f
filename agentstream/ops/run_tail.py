"""``agentstream tail``: a run's stored events straight from JetStream, then live to its end.

What a fresh SSE client of the run receives, read the way the gateway reads it: history by
direct get (no consumer), then the run's ``live.`` republish, de-duplicated by event ID; a live
message naming a predecessor not yet printed, or a quiet spell, sends it back to the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TextIO

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agentstream.ops.event_lines import event_line
from agentstream.runtime.nats_contract import StoredEvent, live_subject, stored_events
from agentstream.runtime.run_history import HistoryReader
from schemas import event_id, message_seq

log = logging.getLogger(__name__)

# A live message can be lost (a reconnect, a slow subscriber): after this long without one, the
# stream is read again.
QUIET_REREAD_S = 2.0


class RunNotFound(Exception):
    """The stream holds no event of the run, and no org was given to wait for one."""


class _Printer:
    """Prints events once each, in ID order, and notes the terminal one."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.last = 0
        self.ended = False

    def show(self, event: StoredEvent) -> None:
        if self.ended or event.id <= self.last:
            return
        self._out.write(event_line(event) + "\n")
        self._out.flush()
        self.last = event.id
        self.ended = event.terminal


async def tail(
    nc: NATS,
    run: str,
    *,
    org: str | None = None,
    from_seq: int = 1,
    follow: bool = True,
    out: TextIO = sys.stdout,
    quiet_reread_s: float = QUIET_REREAD_S,
) -> None:
    """Print ``run``'s events stored from stream sequence ``from_seq`` on; with ``follow``, go on
    with live ones until the terminal event.

    ``org`` defaults to the org the run's events are stored under; a run with none stored yet
    needs it. Raises :class:`RunNotFound` when there is no such run to read or wait for.
    """
    history = HistoryReader(nc)
    org = org or await history.first_org(run)
    if org is None:
        raise RunNotFound(
            f"the stream holds no event of {run} (unknown, or expired); "
            "pass --org to wait for a run that has not started yet"
        )
    printer = _Printer(out)
    printer.last = event_id(max(from_seq, 1)) - 1
    live: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_live(msg: Msg) -> None:
        live.put_nowait(msg)

    # Subscribed before history is read, so nothing stored in between is missed.
    subscription = await nc.subscribe(live_subject(org, run), cb=on_live) if follow else None
    try:
        if subscription is not None:
            await nc.flush()
        await _print_history(history, org, run, printer)
        while follow and not printer.ended:
            try:
                msg = await asyncio.wait_for(live.get(), quiet_reread_s)
            except TimeoutError:
                await _print_history(history, org, run, printer)
                continue
            events = _events_of(msg)
            if not events:
                continue
            if events[0].prev_seq > message_seq(printer.last):
                # A hole: messages before this one were missed live; the stream has them all,
                # this one included.
                await _print_history(history, org, run, printer)
                continue
            for event in events:
                printer.show(event)
    finally:
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def _print_history(history: HistoryReader, org: str, run: str, printer: _Printer) -> None:
    """Print the stored events after the last one printed, up to the terminal one."""
    async with contextlib.aclosing(history.read(org, run, after=printer.last)) as events:
        async for event in events:
            printer.show(event)
            if printer.ended:
                return


def _events_of(msg: Msg) -> list[StoredEvent]:
    """The events of a live message; none (and a warning) for one that is not a stored run's."""
    try:
        return stored_events(msg)
    except (KeyError, ValueError) as exc:
        log.warning("skipped an unreadable message on %s: %r", msg.subject, exc)
        return []
