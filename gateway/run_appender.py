"""The bridge's store: an agent attempt's events appended to its run, unless the run moved on.

A post is stored only if the run has not finished and no newer attempt took over. Both are read
from the run's last stored event, and the store is conditional on that event still being the last
(``agentstream.conditional_append``), so a terminal event or a ``reset`` landing in between makes
the store fail and the post is judged again: no late chunk is ever stored after a run ended.

Each replica remembers the last sequence it stored per run and attempt, so the next post of the
same attempt (an agent posts in order, to the same bridge) skips the read: one round trip to
JetStream per post. If anything else was stored since, the condition fails and the run is read.
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
from agentstream.http import Conflict, Unavailable
from agentstream.run_history import HistoryReader
from schemas import TERMINAL_EVENT_TYPES, run_subject

# A post is judged again after each store that landed before it; an attempt's own posts come one
# after another, so only a run's end or a new attempt can move it, a few times at most.
_MAX_TRIES = 8


class _Tip(NamedTuple):
    """The last event this replica stored for a run."""

    seq: int
    attempt: int


class AppendResult(NamedTuple):
    """Where the post's events were stored; ``duplicate`` if an earlier post had stored them."""

    seqs: list[int]
    duplicate: bool = False


class RunAppender:
    """Appends agents' posts to their runs on this replica."""

    def __init__(self, nc: NATS, history: HistoryReader, *, remembered_runs: int = 10_000) -> None:
        self._nc = nc
        self._history = history
        self._tips: OrderedDict[tuple[str, str], _Tip] = OrderedDict()
        self._remembered_runs = remembered_runs

    async def append(
        self, org: str, run: str, attempt: int, events: Sequence[OutgoingEvent]
    ) -> AppendResult:
        """Store ``events`` of ``attempt`` after everything stored so far, in order, all or none.

        Raises :class:`Conflict` if the run has finished or a newer attempt took over, and
        :class:`Unavailable` if the stream stayed busy.
        """
        key = (org, run)
        tip = self._tips.pop(key, None)
        expected = tip.seq if tip is not None and tip.attempt == attempt else None
        for _ in range(_MAX_TRIES):
            if expected is None:
                expected = await self._judge(org, run, attempt)
            try:
                last = await append(self._nc, run_subject(org, run), events, expected_last=expected)
            except LastSequenceMoved:
                expected = None
                continue
            except AlreadyStored:
                return AppendResult(seqs=[], duplicate=True)
            except AppendBusy as exc:
                raise Unavailable(
                    f"the run's stream is busy, retry: {exc}", headers={"Retry-After": "1"}
                ) from None
            self._remember(key, _Tip(last, attempt))
            return AppendResult(seqs=list(range(last - len(events) + 1, last + 1)))
        raise Unavailable(
            f"run {run} kept moving while the post was stored, retry", headers={"Retry-After": "1"}
        )

    async def _judge(self, org: str, run: str, attempt: int) -> int:
        """The run's last sequence, if the attempt may still add to it."""
        last = await self._history.last_event(org, run)
        if last is None:
            return 0
        if last.type in TERMINAL_EVENT_TYPES:
            raise Conflict(f"run {run} has finished; late events are refused")
        if last.attempt > attempt:
            # A newer attempt took over (after a crash or timeout): the old one must stop.
            raise Conflict(f"attempt {attempt} was superseded by attempt {last.attempt}")
        return last.seq

    def _remember(self, key: tuple[str, str], tip: _Tip) -> None:
        self._tips[key] = tip
        while len(self._tips) > self._remembered_runs:
            self._tips.popitem(last=False)
