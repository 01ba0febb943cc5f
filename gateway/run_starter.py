"""Starting a run's workflow, and doing it after ``POST /api/messages`` has answered.

A run without an ``Idempotency-Key`` is answered (202) once its ``queued`` event is stored; its
workflow start, the slowest step of the request (tens of milliseconds on Temporal's development
server), follows in a task this gateway owns. A start refused for a passing reason (Temporal
restarting, overloaded) is tried again with backoff by Temporal's client itself; one that finally
fails ends the run's stream with ``failed``. Starts are given up at half the start grace, so a
run is never both started here and ended as never started by ``gateway.terminal_guard``; a
gateway that dies with starts pending leaves runs that guard ends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from nats.aio.client import Client as NATS
from temporalio.client import Client as TemporalClient
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from agentstream.runtime.metrics import Metrics
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal import WORKFLOW_NAME, describe_run, task_queue
from agentstream.runtime.terminal_publisher import publish_terminal
from gateway.idempotency import REQUEST_FINGERPRINT_MEMO
from gateway.open_runs import OpenRuns
from gateway.unstarted import START_FAILED_REASON
from schemas import ChatInput, Failed

log = logging.getLogger(__name__)

_DESCRIBE_TIMEOUT_S = 5.0

START_FAILURES = "run_start_failures"
START_FAILURES_HELP = "Runs accepted whose workflow could not be started (their stream failed)."


async def start_chat_workflow(
    temporal: TemporalClient,
    chat: ChatInput,
    run: str,
    *,
    run_timeout_s: float,
    fingerprint: str | None = None,
) -> None:
    """Start ``run``'s ``ChatWorkflow`` on its org's queue, with the run's deadline."""
    await temporal.start_workflow(
        WORKFLOW_NAME,
        chat,
        id=run,
        task_queue=task_queue(chat.org),
        execution_timeout=timedelta(seconds=run_timeout_s),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        memo={REQUEST_FINGERPRINT_MEMO: fingerprint} if fingerprint is not None else None,
    )


class RunStarter:
    """Starts accepted runs' workflows in the background; each start is held until it ends."""

    def __init__(
        self,
        temporal: TemporalClient,
        nc: NATS,
        history: HistoryReader,
        open_runs: OpenRuns,
        metrics: Metrics,
        *,
        run_timeout_s: float,
        start_grace_s: float,
    ) -> None:
        self._temporal = temporal
        self._nc = nc
        self._history = history
        self._open_runs = open_runs
        self._metrics = metrics
        # Shown as 0 from the start: a rate over a series that does not exist yet is no data.
        metrics.inc(START_FAILURES, START_FAILURES_HELP, amount=0)
        self._run_timeout_s = run_timeout_s
        self._budget_s = start_grace_s / 2
        # Strong references (the event loop keeps only weak ones to tasks), by run.
        self._pending: dict[str, asyncio.Task[None]] = {}

    def start_soon(self, chat: ChatInput, run: str) -> None:
        """Start ``run`` in the background; its ``queued`` event must already be stored."""
        self._open_runs.accepted(chat.org)
        task = asyncio.create_task(self._start(chat, run), name=f"start {run}")
        self._pending[run] = task
        task.add_done_callback(lambda _: self._pending.pop(run, None))

    async def settled(self, run: str) -> None:
        """Return once this replica's start of ``run``, if one is under way, has ended.

        Lets what asks Temporal about a run (status, cancel) right after its answer find it.
        """
        task = self._pending.get(run)
        if task is not None:
            # wait(), not await: a caller that leaves must not cancel the start.
            await asyncio.wait([task])

    async def close(self, wait_s: float) -> None:
        """Give pending starts ``wait_s`` to end, then cancel the rest.

        A cancelled start leaves its run queued; past the start grace, its readers' terminal
        guard ends it unless Temporal knows it.
        """
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending.values()), timeout=wait_s)
        for task in late:
            log.warning("shutting down with the start of %s pending", task.get_name())
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _start(self, chat: ChatInput, run: str) -> None:
        started = False
        try:
            started = await self._try_start(chat, run)
        finally:
            # Before the run's end is published: whoever sees it may post again at once.
            self._open_runs.settled(chat.org, started=started)
        if started:
            return
        self._metrics.inc(START_FAILURES, START_FAILURES_HELP)
        # Through the terminal publisher: stored once, with its proof, even if a replica's
        # guard ends the same run at the same moment.
        try:
            await publish_terminal(
                self._nc, self._history, chat.org, Failed(run=run, reason=START_FAILED_REASON)
            )
        except Exception:
            log.exception("could not end run %s, whose start failed", run)

    async def _try_start(self, chat: ChatInput, run: str) -> bool:
        """Whether the workflow started within the budget.

        Temporal's client tries a call again by itself after passing errors (unavailable,
        overloaded: ``temporalio.service.RetryConfig``, with backoff, for up to 10 s); the budget
        bounds the whole start.
        """
        try:
            async with asyncio.timeout(self._budget_s):
                await start_chat_workflow(
                    self._temporal, chat, run, run_timeout_s=self._run_timeout_s
                )
        except WorkflowAlreadyStartedError:
            # A fresh run ID (a ULID) is started by no one else: a try of this start whose
            # answer was lost got through.
            return True
        except Exception as exc:
            log.error("could not start workflow %s: %r", run, exc)
            return await self._known(run)
        return True

    async def _known(self, run: str) -> bool:
        """Whether Temporal knows ``run`` after all: a start whose answer was lost may have
        started it."""
        try:
            description = await asyncio.wait_for(
                describe_run(self._temporal, run), _DESCRIBE_TIMEOUT_S
            )
        except (RPCError, TimeoutError, ConnectionError) as exc:
            log.warning("could not ask Temporal about %s: %r", run, exc)
            return False
        return description is not None
