"""``agentstream inspect``: one run as each service sees it.

Temporal: the workflow's state and, while it runs, its pending activities with their last
heartbeat (``call_agent``'s details tell the stage, tokens and tools so far). JetStream: how many
events the run has stored and where the newest is. PostgreSQL: the stored answer, or else the
workflow's own result. A service that cannot be reached is reported and the others still read.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError

from agentstream.ops.connections import (
    OpsSettings,
    Unreachable,
    message_store,
    open_nats,
    open_temporal,
)
from agentstream.ops.run_list import status_name
from agentstream.runtime.message_store import StoredMessage
from agentstream.runtime.run_history import HistoryReader, HistoryUnavailable
from agentstream.runtime.temporal import describe_run, org_of_task_queue
from agentstream.runtime.temporal_codec import data_converter
from schemas import AgentResult

T = TypeVar("T")


@dataclass(frozen=True)
class PendingActivity:
    """An activity the workflow waits on."""

    name: str
    state: str
    attempt: int
    last_heartbeat: datetime | None
    # The activity's last heartbeat details, decoded (call_agent: its progress).
    details: Any
    last_failure: str


@dataclass(frozen=True)
class WorkflowState:
    """What Temporal says of the run."""

    status: str
    org: str
    task_queue: str
    started: datetime | None
    closed: datetime | None
    history_length: int
    pending: list[PendingActivity]


@dataclass(frozen=True)
class StreamState:
    """What the ``RUNS`` stream holds of the run."""

    org: str
    events: int
    last_seq: int
    last_type: str
    last_attempt: int


@dataclass
class Inspection:
    """Everything found about one run, and what could not be looked at."""

    run: str
    workflow: WorkflowState | None = None
    stream: StreamState | None = None
    stored: StoredMessage | None = None
    # The workflow's result, read only when no answer is stored.
    result: AgentResult | None = None
    # Why a section could not be read: "temporal", "jetstream", "result".
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether any service knows the run."""
        return bool(self.workflow or self.stream or self.stored)


def _state_name(state: int) -> str:
    """``PENDING_ACTIVITY_STATE_STARTED`` as ``started``."""
    name = PendingActivityState.Name(state)  # type: ignore[arg-type]
    return name.removeprefix("PENDING_ACTIVITY_STATE_").lower()


async def workflow_state(client: Client, run: str) -> WorkflowState | None:
    """The run's workflow and its pending activities, or None when Temporal does not know it."""
    description = await describe_run(client, run)
    if description is None:
        return None
    pending = []
    for activity in description.raw_description.pending_activities:
        details: Any = None
        if activity.heartbeat_details.payloads:
            details = (await data_converter.decode(activity.heartbeat_details.payloads))[0]
        beat = activity.last_heartbeat_time
        pending.append(
            PendingActivity(
                name=activity.activity_type.name,
                state=_state_name(activity.state),
                attempt=activity.attempt,
                last_heartbeat=beat.ToDatetime(UTC) if beat.seconds or beat.nanos else None,
                details=details,
                last_failure=activity.last_failure.message,
            )
        )
    return WorkflowState(
        status=status_name(description.status),
        org=org_of_task_queue(description.task_queue),
        task_queue=description.task_queue,
        started=description.start_time,
        closed=description.close_time,
        history_length=description.history_length,
        pending=pending,
    )


async def stream_state(history: HistoryReader, run: str, org: str | None) -> StreamState | None:
    """How many events the run has stored and its newest, or None when the stream has none."""
    org = org or await history.first_org(run)
    if org is None:
        return None
    last = await history.last_event(org, run)
    if last is None:
        return None
    count = 0
    async with contextlib.aclosing(history.read(org, run, after=0)) as events:
        async for _ in events:
            count += 1
    return StreamState(org, count, last.seq, last.type, last.attempt)


async def inspect_run(run: str, settings: OpsSettings) -> Inspection:
    """Look the run up in Temporal, the stream and the message store, each on its own."""
    found = Inspection(run)
    temporal: Client | None = None
    try:
        temporal = await open_temporal(settings.temporal)
        found.workflow = await workflow_state(temporal, run)
    except (Unreachable, RPCError) as exc:
        found.problems["temporal"] = str(exc)
    try:
        nc = await open_nats(settings.nats, name="agentstream-inspect")
    except Unreachable as exc:
        found.problems["jetstream"] = str(exc)
    else:
        try:
            org = found.workflow.org if found.workflow else None
            found.stream = await stream_state(HistoryReader(nc), run, org)
        except HistoryUnavailable as exc:
            found.problems["jetstream"] = f"the RUNS stream did not answer: {exc}"
        finally:
            await nc.close()
    try:
        async with message_store(settings.database_url) as store:
            found.stored = await store.get(run)
    except Unreachable as exc:
        found.problems["result"] = str(exc)
    except Exception as exc:  # asyncpg's errors: a missing table, a refused query
        found.problems["result"] = f"the message store could not be read: {exc}"
    completed = found.workflow is not None and found.workflow.status == "completed"
    if found.stored is None and completed and temporal is not None:
        handle = temporal.get_workflow_handle(run, result_type=AgentResult)
        with contextlib.suppress(Exception):
            found.result = await handle.result()
    return found


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    ago = (now - moment).total_seconds()
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} UTC ({ago:.1f} s ago)"


def _answer(result: AgentResult, out: TextIO) -> None:
    first, *rest = result.final_answer.strip().splitlines() or [""]
    out.write(f"  final answer   {first}\n")
    for line in rest:
        out.write((" " * 17 + line).rstrip() + "\n")
    out.write(f"  model          {result.model or '-'}\n")
    out.write(f"  tool calls     {len(result.tool_calls)}, SQL queries {len(result.sql_queries)}")
    out.write(f", files {len(result.files)}\n")


def _section(name: str, seen: T | None, absent: str, found: Inspection, out: TextIO) -> T | None:
    """Write a section's heading, then the problem that kept it from being read or else
    ``absent`` when nothing was ``seen``; what was seen, when its lines are to follow."""
    out.write(f"{name}\n")
    if name in found.problems:
        out.write(f"  ! {found.problems[name]}\n")
        return None
    if seen is None:
        out.write(f"  ({absent})\n")
    return seen


def print_inspection(found: Inspection, out: TextIO = sys.stdout) -> None:
    """The inspection as a few labelled sections."""
    now = datetime.now(UTC)
    out.write(f"run {found.run}\n")
    workflow = _section("temporal", found.workflow, "no workflow", found, out)
    if workflow is not None:
        out.write(f"  status         {workflow.status}\n")
        out.write(f"  org            {workflow.org} (task queue {workflow.task_queue})\n")
        out.write(f"  started        {_when(workflow.started, now)}\n")
        out.write(f"  closed         {_when(workflow.closed, now)}\n")
        out.write(f"  history        {workflow.history_length} events\n")
        for activity in workflow.pending:
            out.write(
                f"  pending        {activity.name} attempt {activity.attempt} {activity.state}\n"
            )
            out.write(f"    heartbeat    {_when(activity.last_heartbeat, now)}\n")
            if activity.details is not None:
                out.write(f"    progress     {json.dumps(activity.details, default=str)}\n")
            if activity.last_failure:
                out.write(f"    last failure {activity.last_failure}\n")
    stream = _section("jetstream", found.stream, "no stored events", found, out)
    if stream is not None:
        out.write(f"  events         {stream.events} stored (org {stream.org})\n")
        out.write(
            f"  last           sequence {stream.last_seq}: {stream.last_type} "
            f"(attempt {stream.last_attempt})\n"
        )
    out.write("result\n")
    if "result" in found.problems:
        out.write(f"  ! {found.problems['result']}\n")
    if found.stored is not None:
        out.write(f"  stored         in PostgreSQL (conversation {found.stored.conversation_id})\n")
        _answer(found.stored.result, out)
    elif found.result is not None:
        out.write("  stored         no; the workflow's result:\n")
        _answer(found.result, out)
    elif "result" not in found.problems:
        out.write("  (none stored)\n")
