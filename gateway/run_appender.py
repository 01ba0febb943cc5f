"""The bridge's store: an agent attempt's events appended to its run, unless the run moved on.

A post is stored only if the run has not finished and no newer attempt took over. Both are read
from the run's last stored event, and every store is conditional on that event still being the
last (``agentstream.conditional_append``), so a terminal event or a ``reset`` landing in between
makes the store fail and the post is judged again: no late chunk is ever stored after a run ended.

Each replica remembers the last event it stored per run, so the next post of the same attempt (an
agent posts in order, to the same bridge) skips the read. A retried post is recognised by the
agent's event numbers: what an earlier try stored is not stored again.

Two ways to store a post of several events:

- ``atomic``: one JetStream atomic batch, one round trip, all or none. On a replicated stream
  the server stages a batch in memory, which is cheap.
- ``chained``: one conditional publish per event, each conditional on the one before. On an R1
  file-backed stream the server stages every atomic batch in a file store of its own and syncs
  it to disk: measured here at ~30 ms per batch, serialised across the whole stream (33 posts/s
  against 711 single events/s). Chained stores keep order and the refusals race-free; a failure
  mid-post leaves a prefix stored, and the agent's retry stores the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from nats.aio.client import Client as NATS

from agentstream.conditional_append import (
    AlreadyStored,
    AppendBusy,
    LastSequenceMoved,
    OutgoingEvent,
    append,
)
from agentstream.event_publisher import AGENT_PRODUCER
from agentstream.http import Conflict, Unavailable
from agentstream.run_history import HistoryReader
from schemas import TERMINAL_EVENT_TYPES, run_subject

# A post is judged again after each store that landed before it; an attempt's own posts come one
# after another, so only a run's end or a new attempt can move it, a few times at most.
_MAX_TRIES = 8


class AgentEvent(NamedTuple):
    """One event of a post: its number among the attempt's events, and how it is stored."""

    n: int
    outgoing: OutgoingEvent


class _Tip(NamedTuple):
    """The run's last stored event, as far as this replica knows."""

    seq: int
    attempt: int
    # Its number among the attempt's agent events; -1 if it is not one.
    n: int


class AppendResult(NamedTuple):
    """Where the post's events were stored; ``duplicate`` if earlier tries had stored them all."""

    seqs: list[int]
    duplicate: bool = False


class RunAppender:
    """Appends agents' posts to their runs on this replica."""

    def __init__(
        self,
        nc: NATS,
        history: HistoryReader,
        *,
        atomic: bool,
        remembered_runs: int = 10_000,
    ) -> None:
        self._nc = nc
        self._history = history
        self._atomic = atomic
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
        subject = run_subject(org, run)
        tip = self._tips.pop(key, None)
        if tip is not None and tip.attempt != attempt:
            tip = None
        pending = list(events)
        seqs: list[int] = []
        atomic = self._atomic
        for _ in range(_MAX_TRIES):
            if tip is None:
                tip = await self._judge(org, run, attempt)
            # Events an earlier try of this post stored (its answer was lost) are not stored again.
            pending = [event for event in pending if event.n > tip.n]
            if not pending:
                break
            try:
                if atomic and len(pending) > 1:
                    outgoing = [event.outgoing for event in pending]
                    last = await append(self._nc, subject, outgoing, expected_last=tip.seq)
                    seqs += range(last - len(pending) + 1, last + 1)
                    tip = _Tip(last, attempt, pending[-1].n)
                    pending = []
                else:
                    tip = await self._append_each(subject, attempt, pending, tip, seqs)
            except LastSequenceMoved:
                tip = None
                continue
            except AlreadyStored:
                # A batch holding an event stored earlier is refused whole: go one by one.
                atomic = False
                continue
            except AppendBusy as exc:
                raise Unavailable(
                    f"the run's stream is busy, retry: {exc}", headers={"Retry-After": "1"}
                ) from None
            break
        else:
            raise Unavailable(
                f"run {run} kept moving while the post was stored, retry",
                headers={"Retry-After": "1"},
            )
        self._remember(key, tip)
        return AppendResult(seqs=seqs, duplicate=not seqs)

    async def _append_each(
        self, subject: str, attempt: int, pending: list[AgentEvent], tip: _Tip, seqs: list[int]
    ) -> _Tip:
        """Store ``pending`` one by one, each conditional on the one before; the new tip.

        Stored events leave ``pending`` as they go, so a failure leaves what is left to store.
        """
        while pending:
            event = pending[0]
            try:
                last = await append(self._nc, subject, [event.outgoing], expected_last=tip.seq)
            except AlreadyStored:
                # Stored by an earlier post; nothing was added, so the tip still holds.
                pending.pop(0)
                continue
            seqs.append(last)
            tip = _Tip(last, attempt, event.n)
            pending.pop(0)
        return tip

    async def _judge(self, org: str, run: str, attempt: int) -> _Tip:
        """The run's last event, if the attempt may still add to it."""
        last = await self._history.last_event(org, run)
        if last is None:
            return _Tip(0, attempt, -1)
        if last.type in TERMINAL_EVENT_TYPES:
            raise Conflict(f"run {run} has finished; late events are refused")
        if last.attempt > attempt:
            # A newer attempt took over (after a crash or timeout): the old one must stop.
            raise Conflict(f"attempt {attempt} was superseded by attempt {last.attempt}")
        ours = last.producer == AGENT_PRODUCER and last.attempt == attempt
        return _Tip(last.seq, attempt, last.n if ours else -1)

    def _remember(self, key: tuple[str, str], tip: _Tip) -> None:
        self._tips[key] = tip
        while len(self._tips) > self._remembered_runs:
            self._tips.popitem(last=False)
