"""Which run a log line is about: set where a run's work starts, added to every record.

A service sets the run (its org and attempt when known) with :func:`run_context` where it starts
working for one (a bridge post, an SSE stream, an agent request); the context variable follows
the work into every task it starts. A Temporal activity needs nothing set: its run, attempt and
org (from its task queue) are read from the activity's own context, and a workflow's from the
record temporalio's workflow logger makes. :class:`RunContextFilter`, on a log handler, puts them
on each record as ``run``, ``org`` and ``attempt`` (None where unknown).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple


class RunLogContext(NamedTuple):
    """The run a piece of work is for."""

    run: str
    org: str | None = None
    attempt: int | None = None


_current: contextvars.ContextVar[RunLogContext | None] = contextvars.ContextVar(
    "agentstream_run_log_context", default=None
)


def set_run_context(
    run: str, org: str | None = None, attempt: int | None = None
) -> contextvars.Token[RunLogContext | None]:
    """Say that the current task (and the tasks it starts) works for ``run`` from now on."""
    return _current.set(RunLogContext(run, org, attempt))


def reset_run_context(token: contextvars.Token[RunLogContext | None]) -> None:
    """Undo the :func:`set_run_context` that returned ``token``."""
    _current.reset(token)


@contextlib.contextmanager
def run_context(run: str, org: str | None = None, attempt: int | None = None) -> Iterator[None]:
    """Work for ``run`` inside the block."""
    token = set_run_context(run, org, attempt)
    try:
        yield
    finally:
        reset_run_context(token)


def current_run_context() -> RunLogContext | None:
    """The run the current work is for, if any."""
    return _current.get()


def _org_of_queue(queue: str) -> str:
    # Only a process running Temporal work calls this: it has loaded Temporal already.
    from agentstream.runtime.temporal import org_of_task_queue

    # An org's agent-call queue is its task queue and a suffix after a ``.``.
    return org_of_task_queue(queue.partition(".")[0])


def _from_activity() -> RunLogContext | None:
    # Only a process that runs activities has imported this; others must not pay for it.
    activity = sys.modules.get("temporalio.activity")
    if activity is None or not activity.in_activity():
        return None
    info = activity.info()
    return RunLogContext(info.workflow_id, _org_of_queue(info.task_queue), info.attempt)


def _from_workflow(record: logging.LogRecord) -> RunLogContext | None:
    # temporalio's workflow logger puts the workflow's details on the record.
    details: Mapping[str, Any] | None = getattr(record, "temporal_workflow", None)
    if not details or "workflow_id" not in details:
        return None
    return RunLogContext(
        str(details["workflow_id"]),
        _org_of_queue(str(details.get("task_queue", ""))),
        details.get("attempt"),
    )


def run_context_of(record: logging.LogRecord) -> RunLogContext | None:
    """The run ``record`` was logged for: the context set, else the Temporal activity's or
    workflow's it was logged from."""
    return _current.get() or _from_activity() or _from_workflow(record)


class RunContextFilter(logging.Filter):
    """Adds ``run``, ``org`` and ``attempt`` to every record (None outside a run's work)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops one."""
        context = run_context_of(record)
        if context is None:
            record.run = record.org = record.attempt = None
        else:
            record.run, record.org, record.attempt = context
        return True
