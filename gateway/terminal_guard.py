"""Ends streams of runs that Temporal closed without a terminal event, or never started.

A workflow that timed out or was terminated never ran its last activity, so no worker published
``failed``/``cancelled``. The gateway publishes it instead, through the same terminal publisher as
the worker: conditional on the run's last event, so the two can never both be stored.

A run whose gateway died between answering ``POST /api/messages`` and starting its workflow is
unknown to Temporal and holds only ``queued`` (``gateway.unstarted``): past the start grace it
ends ``failed`` the same way, so every replica may try and one end is stored.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from agentstream.runtime.message_store import MessageStore
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal import describe_run, org_of_task_queue
from agentstream.runtime.terminal_publisher import publish_terminal
from gateway.unstarted import (
    DEFAULT_START_GRACE_S,
    START_FAILED_REASON,
    is_only_queued,
    queued_for_s,
)
from schemas import Cancelled, Done, Failed

log = logging.getLogger(__name__)

_CLOSED_WITHOUT_RESULT = {
    WorkflowExecutionStatus.FAILED: "the run failed",
    WorkflowExecutionStatus.TIMED_OUT: "the run did not finish within its deadline (RUN_TIMEOUT_S)",
    WorkflowExecutionStatus.TERMINATED: "the run was terminated",
}


async def publish_missing_terminal(
    temporal: TemporalClient,
    nc: NATS,
    history: HistoryReader,
    store: MessageStore,
    run: str,
    *,
    org: str | None = None,
    start_grace_s: float = DEFAULT_START_GRACE_S,
) -> bool:
    """If the run's workflow is closed, or was never started within ``start_grace_s``, publish
    its terminal event; True if it did end. ``org`` is the stream's (else its first event's)."""
    try:
        description = await describe_run(temporal, run)
    except RPCError:
        return False
    if description is None:
        return await _end_unstarted(nc, history, run, org, start_grace_s)
    status = description.status
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return False
    org = org_of_task_queue(description.task_queue)
    event: Done | Failed | Cancelled
    # A stored answer wins however the workflow closed afterwards: GET /api/runs reports such a
    # run as completed, and its stream must agree.
    stored = await store.get(run)
    if stored is not None:
        event = Done(run=run, result=stored.result)
    elif status == WorkflowExecutionStatus.CANCELED:
        event = Cancelled(run=run, reason="cancelled by request")
    elif status in _CLOSED_WITHOUT_RESULT:
        event = Failed(run=run, reason=_CLOSED_WITHOUT_RESULT[status])
    else:
        event = Failed(run=run, reason="the run completed without a stored answer")
    log.warning("run %s closed (%s) without a terminal event: publishing one", run, status.name)
    await publish_terminal(nc, history, org, event)
    return True


async def _end_unstarted(
    nc: NATS, history: HistoryReader, run: str, org: str | None, start_grace_s: float
) -> bool:
    """End a run Temporal does not know, if it was queued longer than the start grace ago."""
    org = org or await history.first_org(run)
    if org is None or not is_only_queued(await history.last_event(org, run)):
        return False
    age = await queued_for_s(history, org, run)
    if age is None or age < start_grace_s:
        return False
    log.warning("run %s was queued %.0f s ago and never started: ending it", run, age)
    await publish_terminal(nc, history, org, Failed(run=run, reason=START_FAILED_REASON))
    return True
