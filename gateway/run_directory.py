"""What is known about a run: Temporal's status and the stored answer, else what its stream says."""

from __future__ import annotations

import time

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionDescription

from agentstream.runtime.message_store import MessageStore
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal import (
    RUN_STATES,
    WAITING_FOR_AGENT_SINCE,
    describe_run,
    org_of_task_queue,
)
from gateway.run_starter import RunStarter
from gateway.unstarted import DEFAULT_START_GRACE_S, is_only_queued, queued_for_s
from schemas import RunView
from schemas.messages import RunState

_ENDED: dict[str, RunState] = {"failed": "failed", "cancelled": "cancelled"}


async def waiting_for_agent_s(description: WorkflowExecutionDescription) -> float | None:
    """How long the run has waited for an agent, if it is waiting; from the description alone.

    The workflow notes when it began waiting (a memo) before it schedules ``call_agent``; it
    waits for as long as that activity is scheduled but not started (in the agent-call queue,
    or between tries after an agent refused it as busy).
    """
    waiting = any(
        pending.activity_type.name == "call_agent"
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        for pending in description.raw_description.pending_activities
    )
    if not waiting:
        return None
    since = await description.memo_value(WAITING_FOR_AGENT_SINCE, None, type_hint=float)
    return None if since is None else round(max(0.0, time.time() - since), 3)


class RunDirectory:
    """Looks runs up in Temporal (status) and PostgreSQL (final answer)."""

    def __init__(
        self,
        temporal: Client,
        store: MessageStore,
        history: HistoryReader,
        *,
        starter: RunStarter | None = None,
        start_grace_s: float = DEFAULT_START_GRACE_S,
    ) -> None:
        self._temporal = temporal
        self._store = store
        self._history = history
        self._starter = starter
        self._start_grace_s = start_grace_s

    async def find(self, run: str) -> RunView | None:
        """The run's status and result, or None when neither Temporal, the database nor the
        run's stream knows it."""
        if self._starter is not None:
            # A run this replica answered for a moment ago: Temporal knows it once started.
            await self._starter.settled(run)
        stored = await self._store.get(run)
        description = await describe_run(self._temporal, run)
        if description is None:
            if stored is None:
                return await self._not_started(run)
            # Temporal forgot the run (retention), the database did not: it completed.
            return RunView(
                workflow_id=run, status="completed", result=stored.result, org=stored.org
            )
        org = org_of_task_queue(description.task_queue)
        if stored is not None:
            # The answer is stored only at the end: the run is complete even while the workflow
            # is still publishing its terminal event.
            return RunView(workflow_id=run, status="completed", result=stored.result, org=org)
        status = RUN_STATES.get(description.status, "running") if description.status else "running"
        waiting: float | None = None
        if status == "running":
            # The terminal event is published just before the workflow closes: trust it.
            last = await self._history.last_event(org, run)
            if last is not None and last.type in _ENDED:
                status = _ENDED[last.type]
            else:
                waiting = await waiting_for_agent_s(description)
        return RunView(workflow_id=run, status=status, org=org, waiting_for_agent_s=waiting)

    async def _not_started(self, run: str) -> RunView | None:
        """A run Temporal does not know, as its stream tells it: queued by a gateway that starts
        it after answering (running, or failed past the start grace, as its stream will end),
        or ended because its start failed. None for a run the stream does not know either."""
        org = await self._history.first_org(run)
        if org is None:
            return None
        last = await self._history.last_event(org, run)
        if last is not None and last.type in _ENDED:
            return RunView(workflow_id=run, status=_ENDED[last.type], org=org)
        if not is_only_queued(last):
            return None
        age = await queued_for_s(self._history, org, run)
        if age is None:
            return None
        status: RunState = "failed" if age >= self._start_grace_s else "running"
        return RunView(workflow_id=run, status=status, org=org)
