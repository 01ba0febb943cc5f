"""The worker process: two Temporal workers per served org, sharing one set of clients.

One serves the org's task queue (workflows and every stage but the agent call); the other only
``call_agent``, on the org's agent-call queue, with as many slots as the agents can serve: runs
beyond them wait in Temporal, and nothing else of any run waits behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.worker import Worker

from agentstream.runtime.message_store import HistoryBounds, MessageStore, open_pool
from agentstream.runtime.nats_conn import connect_nats
from agentstream.runtime.sandbox.backends import SandboxBackends
from agentstream.runtime.temporal import agent_call_queue, connect_temporal, task_queue
from schemas import require_id
from worker.activities import RunActivities
from worker.settings import WorkerSettings
from worker.workflows import ChatWorkflow

log = logging.getLogger(__name__)
# The line the local stack waits for (``worker ready``): written whatever LOG_LEVEL says, in the
# service's log format.
_ready = logging.getLogger("worker.ready")
_ready.setLevel(logging.INFO)


async def run_worker(settings: WorkerSettings, stop: asyncio.Event) -> None:
    """Serve the orgs' task queues until ``stop`` is set, then drain and close every client."""
    for org in settings.orgs:
        require_id("org", org)
    agent_slots = settings.agent_slots_per_org()
    nc = await connect_nats(settings.nats, name="worker")
    pool = await open_pool(settings.database_url)
    # No client-side retries and no read timeout: Temporal owns both (retry policy, heartbeats).
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
    try:
        temporal = await connect_temporal(settings.temporal)
        activities = RunActivities(
            nc=nc,
            store=MessageStore(pool),
            sandboxes=SandboxBackends(
                settings.sandbox.backend,
                root=Path(settings.sandbox.root),
                allow_network=settings.sandbox.allow_network,
                e2b_api_key=settings.sandbox.e2b_api_key,
                e2b_template=settings.sandbox.e2b_template,
            ),
            http=http,
            agent_url=settings.agent_url,
            gateway_urls=settings.gateway_urls,
            callback_secret=settings.callback_secret,
            heartbeat_s=settings.heartbeat_s,
            history_bounds=HistoryBounds(settings.history_max_turns, settings.history_max_chars),
            test_stage_delays=settings.test_stage_delays,
        )

        def serve(
            queue: str,
            activities: Sequence[Callable[..., object]],
            *,
            workflows: Sequence[type] = (),
            slots: int | None = None,
        ) -> Worker:
            return Worker(
                temporal,
                task_queue=queue,
                workflows=workflows,
                activities=activities,
                max_concurrent_activities=slots,
                graceful_shutdown_timeout=timedelta(seconds=5),
                # Cancellation reaches an activity only with a heartbeat's answer: send them
                # promptly instead of throttling to 80% of the heartbeat timeout.
                max_heartbeat_throttle_interval=timedelta(seconds=1),
                default_heartbeat_throttle_interval=timedelta(seconds=1),
            )

        stages: list[Callable[..., object]] = [
            activities.create_sandbox,
            activities.publish_status,
            activities.save_message,
            activities.publish_terminal,
            activities.destroy_sandbox,
        ]
        workers: list[Worker] = []
        for org in settings.orgs:
            workers.append(serve(task_queue(org), stages, workflows=[ChatWorkflow]))
            workers.append(serve(agent_call_queue(org), [activities.call_agent], slots=agent_slots))
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            _ready.info("worker ready: task queues %s", ", ".join(w.task_queue for w in workers))
            await stop.wait()
    finally:
        await http.aclose()
        await pool.close()
        await nc.drain()


def main(settings: WorkerSettings) -> None:
    """Run the worker until SIGINT or SIGTERM."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(serve())
