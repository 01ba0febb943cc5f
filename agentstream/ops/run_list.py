"""``agentstream runs``: recent runs, their status and org, as Temporal lists them.

Temporal, not the message store: it knows every run (running, failed, cancelled, started through
Temporal directly), while PostgreSQL holds only the answers of runs that completed. Temporal
keeps closed runs for its namespace's retention; their stored answers stay in PostgreSQL
(``agentstream inspect`` reads them).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import NamedTuple, TextIO

from temporalio.client import Client, WorkflowExecutionStatus

from agentstream.runtime.temporal import RUN_STATES, WORKFLOW_NAME, org_of_task_queue, task_queue

# Temporal's names of a workflow's states, as its list query spells them.
STATUSES = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
}
_NAME_OF: dict[WorkflowExecutionStatus, str] = {
    **RUN_STATES,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued",
}


class RunRow(NamedTuple):
    """One run as Temporal lists it."""

    run: str
    org: str
    status: str
    started: datetime | None
    closed: datetime | None


def status_name(status: WorkflowExecutionStatus | None) -> str:
    """A workflow state as agentstream names it (``cancelled``, ``timed_out``, …)."""
    return _NAME_OF.get(status, "unknown") if status is not None else "unknown"


def list_query(*, org: str | None = None, status: str | None = None) -> str:
    """The visibility query for agentstream's runs, of one org or state if given."""
    terms = [f"WorkflowType = '{WORKFLOW_NAME}'"]
    if org:
        terms.append(f"TaskQueue = '{task_queue(org)}'")
    if status:
        terms.append(f"ExecutionStatus = '{STATUSES[status]}'")
    return " AND ".join(terms)


async def recent_runs(
    client: Client, *, org: str | None = None, status: str | None = None, limit: int = 20
) -> list[RunRow]:
    """Up to ``limit`` runs, open ones first, then the most recently closed."""
    return [
        RunRow(
            run=execution.id,
            org=org_of_task_queue(execution.task_queue),
            status=status_name(execution.status),
            started=execution.start_time,
            closed=execution.close_time,
        )
        async for execution in client.list_workflows(
            list_query(org=org, status=status), limit=limit
        )
    ]


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _took(row: RunRow) -> str:
    if row.started is None or row.closed is None:
        return "-"
    return f"{(row.closed - row.started).total_seconds():.1f}s"


def print_runs(rows: list[RunRow], out: TextIO = sys.stdout) -> None:
    """The runs as a table (times in UTC)."""
    table = [("RUN", "ORG", "STATUS", "STARTED (UTC)", "TOOK")]
    table += [(r.run, r.org, r.status, _when(r.started), _took(r)) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")
    if not rows:
        out.write("(no runs)\n")
