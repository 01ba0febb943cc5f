"""How many runs an org has open (waiting or running), for the per-org bound on the waiting line.

Temporal is the one record every stateless replica shares: its visibility store counts the org's
running workflows (one indexed query, a few milliseconds on the development server). A count is
reused for ``fresh_s``, plus the runs this replica started since, so a burst of posts costs one
query per org and interval; replicas may together overshoot the bound by what they start within
one interval (and by visibility's lag, tens of milliseconds). Runs this replica accepted whose
workflow start is still under way (``gateway.run_starter``) are counted on top until it ends.
The bound is a guard against unbounded queues, not an exact quota.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from temporalio.client import Client

from agentstream.runtime.temporal import task_queue

# Bounds the memory held whatever the number of orgs named (in open mode any org may be).
_MAX_ORGS = 10_000


@dataclass
class _Count:
    value: int
    at: float
    started_since: int = 0


class OpenRuns:
    """Counts of open runs per org, from Temporal, briefly cached."""

    def __init__(self, temporal: Client, *, fresh_s: float = 1.0) -> None:
        self._temporal = temporal
        self._fresh_s = fresh_s
        self._counts: dict[str, _Count] = {}
        self._queries: dict[str, asyncio.Task[int]] = {}
        # Accepted runs whose start has not ended yet: not in Temporal's count.
        self._starting: dict[str, int] = {}

    async def count(self, org: str) -> int:
        """The org's open runs: waiting for a worker or an agent, or running."""
        cached = self._counts.get(org)
        now = time.monotonic()
        starting = self._starting.get(org, 0)
        if cached is not None and now - cached.at < self._fresh_s:
            return cached.value + cached.started_since + starting
        query = self._queries.get(org)
        if query is None:
            query = asyncio.create_task(self._query(org))
            self._queries[org] = query
            query.add_done_callback(lambda done: self._forget(org, done))
        # Shielded: one caller leaving must not cancel the query the others wait for.
        return await asyncio.shield(query) + starting

    def _forget(self, org: str, query: asyncio.Task[int]) -> None:
        if self._queries.get(org) is query:
            del self._queries[org]
        if not query.cancelled():
            # Retrieved here too, so a failure every caller left is not logged as unhandled.
            query.exception()

    def started(self, org: str) -> None:
        """This replica started a run of ``org`` since the last count."""
        cached = self._counts.get(org)
        if cached is not None:
            cached.started_since += 1

    def accepted(self, org: str) -> None:
        """This replica accepted a run of ``org`` whose workflow it is about to start."""
        self._starting[org] = self._starting.get(org, 0) + 1

    def settled(self, org: str, *, started: bool) -> None:
        """The start of a run :meth:`accepted` ended: the workflow ``started``, or never will."""
        left = self._starting.get(org, 0) - 1
        if left > 0:
            self._starting[org] = left
        else:
            self._starting.pop(org, None)
        if started:
            self.started(org)

    async def _query(self, org: str) -> int:
        # ``org`` is a validated ID: it cannot close the quoted string.
        found = await self._temporal.count_workflows(
            f"TaskQueue = '{task_queue(org)}' AND ExecutionStatus = 'Running'"
        )
        if len(self._counts) >= _MAX_ORGS:
            self._counts.clear()
        self._counts[org] = _Count(value=found.count, at=time.monotonic())
        return found.count
