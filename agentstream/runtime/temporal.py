"""Everything agentstream names in Temporal, and the lookups every service makes there.

The workflow's name, each org's task queues, the memo key the workflow writes and the gateway
reads, the default run deadline, connecting, and describing or cancelling a run by its ID: the
gateway, the worker and the examples take them from here, so the two sides cannot drift apart.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentstream.runtime.settings import TemporalSettings
from agentstream.runtime.temporal_codec import data_converter
from agentstream.runtime.tracing import temporal_interceptors
from schemas import DEFAULT_ORG, is_valid_id, require_id
from schemas.messages import RunState

# A workflow's state as agentstream names a run's (a run continued as new has none of its own).
RUN_STATES: dict[WorkflowExecutionStatus, RunState] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}

WORKFLOW_NAME = "ChatWorkflow"
# A run's overall deadline when it was started without an execution timeout (e.g. by the
# ``temporal`` CLI); the gateway's RUN_TIMEOUT_S defaults to the same.
DEFAULT_RUN_TIMEOUT_S = 1800.0
# Workflow memo key: when (seconds since the epoch) the run began waiting for an agent.
WAITING_FOR_AGENT_SINCE = "waiting_for_agent_since"

_QUEUE_PREFIX = "agent-"


def task_queue(org: str) -> str:
    """The Temporal task queue that serves ``org``'s runs: its workflows and every stage but the
    agent call."""
    return _QUEUE_PREFIX + require_id("org", org)


def agent_call_queue(org: str) -> str:
    """The activity task queue of ``org``'s agent calls, bounded by the agents' capacity.

    ``.`` cannot occur in an org ID, so this name never equals another org's ``task_queue``.
    """
    return f"{task_queue(org)}.calls"


def org_of_task_queue(queue: str) -> str:
    """The org a run belongs to, from the task queue it was started on (``task_queue(org)``);
    ``DEFAULT_ORG`` for a queue that is not one of ours."""
    org = queue.removeprefix(_QUEUE_PREFIX)
    return org if queue.startswith(_QUEUE_PREFIX) and is_valid_id(org) else DEFAULT_ORG


async def connect_temporal(settings: TemporalSettings) -> Client:
    """A client of the configured frontend and namespace, with the runs' payload converter and,
    when tracing is on, the tracing interceptor (workers made with the client inherit it)."""
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=data_converter,
        interceptors=temporal_interceptors(),
    )


async def describe_run(client: Client, run: str) -> WorkflowExecutionDescription | None:
    """``run``'s workflow as Temporal describes it, or None when Temporal does not know it.

    Any other error (Temporal unreachable, restarting) is raised: what it means is the caller's.
    """
    try:
        return await client.get_workflow_handle(run).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def request_cancel(client: Client, run: str) -> bool:
    """Ask Temporal to cancel ``run``'s workflow; False when Temporal does not know it.

    Other errors are raised, as by :func:`describe_run`.
    """
    try:
        await client.get_workflow_handle(run).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
