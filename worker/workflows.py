"""``ChatWorkflow``: sandbox → agent → save → terminal event. Temporal never carries tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from schemas import (
        AgentResult,
        CallAgentInput,
        ChatInput,
        SandboxInfo,
        SaveMessageInput,
        TerminalInput,
    )
    from worker.activities import CreateSandboxInput, DestroySandboxInput

WORKFLOW_NAME = "ChatWorkflow"

_QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=5)
_AGENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=3
)


class RunCancelled(Exception):
    """Internal marker: the run was cancelled while an activity ran."""


@workflow.defn(name=WORKFLOW_NAME)
class ChatWorkflow:
    """One user message, answered by the agent in a sandbox, stored, and announced."""

    @workflow.run
    async def run(self, chat: ChatInput) -> AgentResult:
        """Run the stages; whatever happens, destroy the sandbox and publish one terminal event."""
        run = workflow.info().workflow_id
        sandbox: SandboxInfo | None = None
        try:
            sandbox = await workflow.execute_activity(
                "create_sandbox",
                CreateSandboxInput(run=run, org=chat.org),
                result_type=SandboxInfo,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_QUICK,
            )
            result: AgentResult = await workflow.execute_activity(
                "call_agent",
                CallAgentInput(run=run, chat=chat, sandbox=sandbox),
                result_type=AgentResult,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=_AGENT_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            await workflow.execute_activity(
                "save_message",
                SaveMessageInput(run=run, chat=chat, result=result),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=_QUICK,
            )
        except (asyncio.CancelledError, CancelledError):
            await self._finish(run, sandbox, _cancelled(run, chat))
            raise
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                await self._finish(run, sandbox, _cancelled(run, chat))
                raise asyncio.CancelledError() from err
            failed = TerminalInput(
                run=run, org=chat.org, outcome="failed", reason=str(err.cause or err)
            )
            await self._finish(run, sandbox, failed)
            raise
        done = TerminalInput(run=run, org=chat.org, outcome="done", result=result)
        await self._finish(run, sandbox, done)
        return result

    async def _finish(self, run: str, sandbox: SandboxInfo | None, terminal: TerminalInput) -> None:
        """Destroy the sandbox, then publish the terminal event that ends every client's stream."""
        if sandbox is not None:
            await workflow.execute_activity(
                "destroy_sandbox",
                DestroySandboxInput(run=run, sandbox=sandbox),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=_QUICK,
            )
        await workflow.execute_activity(
            "publish_terminal",
            terminal,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=500)),
        )


def _cancelled(run: str, chat: ChatInput) -> TerminalInput:
    return TerminalInput(run=run, org=chat.org, outcome="cancelled", reason="cancelled by request")
