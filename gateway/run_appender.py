"""The bridge's store: an agent attempt's events appended to its run, unless the run moved on.

A post is stored only if the run has not finished and no newer attempt took over. Both are read
from the run's last stored message, and every store is conditional on that message still being
the last (``nats_contract.publish`` with ``expected_last``), so a terminal event or a ``reset``
landing in between makes the store fail and the post is judged again: no late chunk is ever
stored after a run ended.

A post's events are stored as one message (``nats_contract.pack``): one publish and one
acknowledgement, all or none, in order. Only a post too large for one NATS message (above the
server's ``max_payload``) becomes several, each conditional on the one before; a failure between
them leaves a prefix stored, and the agent's retry stores the rest.

Each replica remembers the last message it stored per run, so the next post of the same attempt
(an agent posts in order, to the same bridge) skips the read. A retried post is recognised by the
agent's event numbers, carried in each message's ``Nats-Msg-Id``: what an earlier try stored is
not stored again, however long ago and whatever was stored since.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from nats.aio.client import Client as NATS

from agentstream.runtime.http import Conflict, Unavailable
from agentstream.runtime.nats_contract import (
    AppendBusy,
    LastSequenceMoved,
    OutgoingEvent,
    Producer,
    message_headers,
    pack,
    publish,
)
from agentstream.runtime.run_history import HistoryReader
from schemas import EVENTS_PER_MESSAGE, TERMINAL_EVENT_TYPES, event_id

# A post is judged again after each store that landed before it; an attempt's own posts come one
# after another, so only a run's end or a new attempt can move it, a few times at most.
_MAX_TRIES = 8
# Room left in a message for its headers besides the events' types.
_HEADER_ROOM = 1024


class AgentEvent(NamedTuple):
    """One event of a post: its number among the attempt's events, type and encoded JSON."""

    n: int
    type: str
    data: bytes


class _Tip(NamedTuple):
    """The run's last stored message, as far as this replica knows."""

    seq: int
    attempt: int
    # The number of its (last) event among the attempt's agent events; -1 if it is not one.
    n: int


class AppendResult(NamedTuple):
    """The IDs of the post's stored events; ``duplicate`` if earlier tries had stored them all."""

    ids: list[int]
    duplicate: bool = False


class RunAppender:
    """Appends agents' posts to their runs on this replica."""

    def __init__(
        self,
        nc: NATS,
        history: HistoryReader,
        *,
        max_message_bytes: int | None = None,
        remembered_runs: int = 10_000,
    ) -> None:
        """``max_message_bytes``: the largest message to store (default: the server's
        ``max_payload``)."""
        self._nc = nc
        self._history = history
        self._max_message_bytes = max_message_bytes
        self._tips: OrderedDict[tuple[str, str], _Tip] = OrderedDict()
        self._remembered_runs = remembered_runs

    async def append(
        self, org: str, run: str, attempt: int, events: Sequence[AgentEvent]
    ) -> AppendResult:
        """Store ``events`` of ``attempt`` after everything stored so far, in order, once.

        Raises :class:`Conflict` if the run has finished or a newer attempt took over, and
        :class:`Unavailable` if the stream stayed busy.
        """
        key = (org, run)
        tip = self._tips.pop(key, None)
        if tip is not None and tip.attempt != attempt:
            tip = None
        pending = list(events)
        ids: list[int] = []
        for _ in range(_MAX_TRIES):
            if tip is None:
                tip = await self._judge(org, run, attempt)
            # Events an earlier try of this post stored (its answer was lost) are not stored again.
            pending = [event for event in pending if event.n > tip.n]
            try:
                while pending:
                    part = self._fitting(pending)
                    message = _message(run, attempt, part)
                    stored = await publish(self._nc, org, run, message, expected_last=tip.seq)
                    if stored.duplicate:
                        break
                    ids += (event_id(stored.seq, index) for index in range(len(part)))
                    tip = _Tip(stored.seq, attempt, part[-1].n)
                    del pending[: len(part)]
            except LastSequenceMoved:
                pass
            except AppendBusy as exc:
                raise Unavailable(
                    f"the run's stream is busy, retry: {exc}", headers={"Retry-After": "1"}
                ) from None
            if not pending:
                break
            # Something else was stored, or this very message by an earlier try: look again.
            tip = None
        else:
            raise Unavailable(
                f"run {run} kept moving while the post was stored, retry",
                headers={"Retry-After": "1"},
            )
        self._remember(key, tip)
        return AppendResult(ids=ids, duplicate=not ids)

    def _fitting(self, pending: list[AgentEvent]) -> list[AgentEvent]:
        """The longest prefix of ``pending`` that one message can hold (at least one event)."""
        budget = (self._max_message_bytes or self._nc.max_payload) - _HEADER_ROOM
        count = size = 0
        for event in pending[:EVENTS_PER_MESSAGE]:
            size += len(event.data) + len(event.type) + 2
            if size > budget and count:
                break
            count += 1
        return pending[:count]

    async def _judge(self, org: str, run: str, attempt: int) -> _Tip:
        """The run's last message, if the attempt may still add to it."""
        last = await self._history.last_event(org, run)
        if last is None:
            return _Tip(0, attempt, -1)
        if last.type in TERMINAL_EVENT_TYPES:
            raise Conflict(f"run {run} has finished; late events are refused")
        if last.attempt > attempt:
            # A newer attempt took over (after a crash or timeout): the old one must stop.
            raise Conflict(f"attempt {attempt} was superseded by attempt {last.attempt}")
        if last.producer == Producer.AGENT and last.attempt == attempt:
            return _Tip(last.seq, attempt, last.n)
        # Someone else stored the last message (the worker, at an attempt's start): what this
        # attempt's agent stored before it, if anything, is found by reading the run.
        n = await self._history.last_number(org, run, Producer.AGENT, attempt)
        return _Tip(last.seq, attempt, n)

    def _remember(self, key: tuple[str, str], tip: _Tip) -> None:
        self._tips[key] = tip
        while len(self._tips) > self._remembered_runs:
            self._tips.popitem(last=False)


def _message(run: str, attempt: int, events: list[AgentEvent]) -> OutgoingEvent:
    """One message holding ``events``; its ``Nats-Msg-Id`` names the last, so a retry of the
    same message is stored once."""
    headers = message_headers(run, Producer.AGENT, attempt, events[-1].n, [e.type for e in events])
    return OutgoingEvent(pack([e.data for e in events]), headers)
