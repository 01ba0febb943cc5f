"""``ChatWorkflow``: sandbox → wait for an agent → agent → save → terminal event.

Temporal never carries tokens. Only ``call_agent`` is bounded by the agents' capacity: it runs on
its org's agent-call queue, whose worker slots are the agents' capacity, so extra runs wait in
Temporal (their stream says ``waiting_for_agent``) while every other stage of every run goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from agentstream.runtime.temporal import (
        DEFAULT_RUN_TIMEOUT_S,
        WAITING_FOR_AGENT_SINCE,
        WORKFLOW_NAME,
        agent_call_queue,
    )
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

# ``ApplicationError.type`` of a run that ran out of time.
RUN_DEADLINE_EXCEEDED = "RunDeadlineExceeded"

_QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=5)
# No maximum of attempts: the activity counts its own failures (worker/attempts.py), so that
# capacity refusals are retried for as long as the run's deadline allows.
_BOUNDED = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
# Publishing an event only fails while NATS is away: keep trying.
_PUBLISH = RetryPolicy(initial_interval=timedelta(milliseconds=500))
_HEARTBEAT = timedelta(seconds=10)
# Kept back from the run's deadline (at most a third of it) to stop its stage, destroy its
# sandbox and end its stream before Temporal's execution timeout closes the workflow without
# either. Stopping the agent takes up to a heartbeat interval (when cancellation reaches it).
_CLEANUP_RESERVE = timedelta(seconds=30)

# Marks runs that destroy a sandbox they never learnt (``_finish``); earlier runs replay without.
_DESTROY_UNKNOWN_SANDBOX = "destroy-unknown-sandbox"

T = TypeVar("T")


class RunDeadlineExceeded(Exception):
    """Internal marker: the run reached its deadline before it had an answer."""


@workflow.defn(name=WORKFLOW_NAME)
class ChatWorkflow:
    """One user message, answered by the agent in a sandbox, stored, and announced."""

    def __init__(self) -> None:
        info = workflow.info()
        self._sandbox: SandboxInfo | None = None
        self._creating = False
        self._timeout = info.execution_timeout or timedelta(seconds=DEFAULT_RUN_TIMEOUT_S)
        self._deadline = (
            info.workflow_start_time + self._timeout - min(_CLEANUP_RESERVE, self._timeout / 3)
        )

    @workflow.run
    async def run(self, chat: ChatInput) -> AgentResult:
        """Run the stages; whatever happens, destroy the sandbox and publish one terminal event.

        Cancelled before it has an answer, the run ends ``cancelled``; once the agent answered,
        it ends ``done`` whatever cancellation arrives. Past its deadline (the workflow's
        execution timeout, else ``DEFAULT_RUN_TIMEOUT_S``) it fails, saying so.
        """
        run = workflow.info().workflow_id
        try:
            result = await self._within_deadline(self._answer(run, chat))
        except (asyncio.CancelledError, CancelledError, ActivityError, RunDeadlineExceeded) as exc:
            terminal, error = self._ending(run, chat, exc)
            await _to_completion(self._finish(run, terminal))
            if error is exc:
                raise
            raise error from None
        try:
            # The answer exists: it is stored and announced even if a cancellation arrives now,
            # so the stream and the stored record agree that the run is done.
            await _to_completion(
                workflow.execute_activity_method(
                    RunActivities.save_message,
                    SaveMessageInput(run=run, chat=chat, result=result),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=_QUICK,
                )
            )
        except ActivityError as err:
            await _to_completion(self._finish(run, _failed(run, chat, str(err.cause or err))))
            raise
        done = TerminalInput(run=run, org=chat.org, outcome="done", result=result)
        await _to_completion(self._finish(run, done))
        return result

    def _ending(
        self, run: str, chat: ChatInput, exc: BaseException
    ) -> tuple[TerminalInput, BaseException]:
        """How a run that has no answer ends, and what the workflow raises.

        Read from the run's state, not only from ``exc``: an activity cancelled because the
        run was cancelled or ran out of time raises the same error either way.
        """
        if workflow.cancellation_reason() is not None:
            return _cancelled(run, chat), asyncio.CancelledError()
        if isinstance(exc, RunDeadlineExceeded) or workflow.now() >= self._deadline:
            reason = f"the run did not finish within its deadline of {_seconds(self._timeout)}"
            error = ApplicationError(reason, type=RUN_DEADLINE_EXCEEDED, non_retryable=True)
            return _failed(run, chat, reason), error
        if isinstance(exc, ActivityError) and not isinstance(exc.cause, CancelledError):
            return _failed(run, chat, str(exc.cause or exc)), exc
        return _cancelled(run, chat), asyncio.CancelledError()

    async def _within_deadline(self, stages: Coroutine[Any, Any, T]) -> T:
        """``stages``' result, or :class:`RunDeadlineExceeded` once the deadline passed.

        Once the run is cancelled or out of time, the stages are cancelled and awaited to their
        end. A cancelled run stays cancelled even if they answer meanwhile (unless they had
        answered before the cancellation arrived); at the deadline, an answer that arrives while
        they stop is the run's answer. That is what ``asyncio.wait_for`` did on Python 3.11.
        From 3.12 it awaits the stages in the workflow's own task, where a cancellation only
        reaches the activity, so a late answer would win after a cancellation too, and a history
        could replay differently on another interpreter. A workflow timer raced against the
        stages, both tasks, behaves the same on every interpreter.
        """
        left = (self._deadline - workflow.now()).total_seconds()
        # Started before the stages and cancelled after them, as ``asyncio.wait_for`` did: the
        # commands are the same, so runs begun by earlier workers replay.
        timer = asyncio.create_task(workflow.sleep(left)) if left > 0 else None
        task = asyncio.create_task(stages)
        try:
            if timer is not None:
                try:
                    await workflow.wait([task, timer], return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    if task.done():
                        return task.result()
                    await _stopped(task)
                    raise
            if task.done():
                return task.result()
            await _stopped(task)
            try:
                return task.result()
            except asyncio.CancelledError:
                raise RunDeadlineExceeded() from None
        finally:
            if timer is not None:
                timer.cancel()

    def _still_wanted(self) -> None:
        """Raise if the run was cancelled or ran out of time during an activity that finished.

        An activity awaited until its cancellation completes can still return a result: the
        cancellation reached the workflow but not the activity, and must not be lost.
        """
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError()
        if workflow.now() >= self._deadline:
            raise RunDeadlineExceeded()

    def _time_left(self) -> timedelta:
        # A little beyond the deadline: the run's own deadline, not the activity's, ends it.
        return max(self._deadline - workflow.now(), timedelta(0)) + timedelta(seconds=5)

    async def _answer(self, run: str, chat: ChatInput) -> AgentResult:
        """Create the sandbox, wait for an agent, and have it answer."""
        # Waited for even when the run is cancelled meanwhile: the activity either returns the
        # sandbox (destroyed by ``_finish``) or, cancelled, removes what it created.
        self._creating = True
        self._sandbox = await workflow.execute_activity_method(
            RunActivities.create_sandbox,
            CreateSandboxInput(run=run, org=chat.org),
            start_to_close_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=self._time_left(),
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=_BOUNDED,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        self._still_wanted()
        await workflow.execute_activity_method(
            RunActivities.publish_status,
            PublishStatusInput(run=run, org=chat.org, stage=Stage.WAITING_FOR_AGENT),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_PUBLISH,
        )
        # For GET /api/runs/{id}: how long the run has waited, while call_agent is not started.
        workflow.upsert_memo({WAITING_FOR_AGENT_SINCE: workflow.now().timestamp()})
        return await workflow.execute_activity_method(
            RunActivities.call_agent,
            CallAgentInput(run=run, chat=chat, sandbox=self._sandbox),
            task_queue=agent_call_queue(chat.org),
            start_to_close_timeout=timedelta(minutes=30),
            schedule_to_close_timeout=self._time_left(),
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=_BOUNDED,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _finish(self, run: str, terminal: TerminalInput) -> None:
        """Destroy the sandbox, then publish the terminal event that ends every client's stream.

        A run that asked for a sandbox but never learnt it has its sandbox destroyed by run ID:
        when the creation's completion and the run's cancellation reach the workflow in one
        task, the SDK reports the activity cancelled and its result is lost, sandbox and all.
        """
        unknown = (
            self._sandbox is None and self._creating and workflow.patched(_DESTROY_UNKNOWN_SANDBOX)
        )
        if self._sandbox is not None or unknown:
            try:
                await workflow.execute_activity_method(
                    RunActivities.destroy_sandbox,
                    DestroySandboxInput(run=run, sandbox=self._sandbox),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=_QUICK,
                )
            except ActivityError as err:
                # The run's outcome stands; its clients still need their terminal event.
                workflow.logger.warning("could not destroy the sandbox of %s: %s", run, err.cause)
        await workflow.execute_activity_method(
            RunActivities.publish_terminal,
            terminal,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_PUBLISH,
        )


async def _stopped(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; what it ended with stays in it."""
    task.cancel()
    await workflow.wait([task])


async def _to_completion(step: Awaitable[T]) -> T:
    """Await ``step`` to its end: a cancellation arriving meanwhile does not cut it short."""
    task = asyncio.ensure_future(step)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g} s"


def _cancelled(run: str, chat: ChatInput) -> TerminalInput:
    return TerminalInput(run=run, org=chat.org, outcome="cancelled", reason="cancelled by request")


def _failed(run: str, chat: ChatInput, reason: str) -> TerminalInput:
    return TerminalInput(run=run, org=chat.org, outcome="failed", reason=reason)
