"""Workflow starts made after the answer ride out a Temporal restart, and end runs it never took.

Each test has a Temporal development server of its own, which it stops on purpose.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from ulid import ULID

from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path
from agentstream.runtime.metrics import Metrics
from agentstream.runtime.nats_contract import ensure_runs_stream, publish_event
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal_codec import data_converter
from gateway.open_runs import OpenRuns
from gateway.run_starter import START_FAILURES, RunStarter
from gateway.unstarted import QUEUED_PRODUCER, START_FAILED_REASON
from schemas import DEFAULT_ORG, ChatInput, Failed, Stage, Status, decode_event

_READY_S = 60.0
# Far longer than a start takes: close() returns as soon as the start has ended.
_START_ENDS_WITHIN_S = 60.0


@dataclass
class Parts:
    """A Temporal server of the test's own, and what a gateway's starter works with."""

    temporal: ServiceProcess
    client: TemporalClient
    nc: NATS
    history: HistoryReader
    metrics: Metrics

    def starter(self, *, start_grace_s: float) -> RunStarter:
        """A starter like the gateway's, giving starts up at half ``start_grace_s``."""
        return RunStarter(
            self.client,
            self.nc,
            self.history,
            OpenRuns(self.client),
            self.metrics,
            run_timeout_s=60.0,
            start_grace_s=start_grace_s,
        )

    async def queue(self) -> ChatInput:
        """A fresh run, queued as POST /api/messages queues it."""
        run = f"run_{ULID()}"
        queued = Status(run=run, stage=Stage.QUEUED)
        await publish_event(self.nc, DEFAULT_ORG, queued, producer=QUEUED_PRODUCER)
        return ChatInput(prompt="hello", conversation_id=run, org=DEFAULT_ORG)


@pytest.fixture
async def parts(nats_url: str, tmp_path: Path) -> AsyncIterator[Parts]:
    """Temporal on a free port, started and ready; NATS with the runs stream."""
    port = free_port()
    argv = [binary_path("temporal"), "server", "start-dev", "--ip", "127.0.0.1"]
    argv += ["--port", str(port), "--headless", "--log-level", "error"]
    argv += ["--db-filename", str(tmp_path / "temporal.db")]
    temporal = ServiceProcess("temporal", argv, dict(os.environ), tmp_path)
    address = f"127.0.0.1:{port}"
    clients: list[TemporalClient] = []

    async def answers() -> bool:
        try:
            clients.append(await TemporalClient.connect(address, data_converter=data_converter))
        except Exception:
            return False
        return True

    nc = await nats.connect(nats_url)
    await temporal.start()
    try:
        await ensure_runs_stream(nc.jetstream(), max_age_s=3_600, replicas=1)
        await temporal.wait_until(answers, _READY_S)
        yield Parts(temporal, clients[-1], nc, HistoryReader(nc), Metrics())
    finally:
        await temporal.stop()
        await nc.close()


async def test_a_start_made_while_temporal_restarts_starts_the_run(parts: Parts) -> None:
    starter = parts.starter(start_grace_s=120.0)
    chat = await parts.queue()
    run = chat.conversation_id
    await parts.temporal.stop()

    starter.start_soon(chat, run)
    await parts.temporal.start()
    await starter.close(_START_ENDS_WITHIN_S)

    description = await parts.client.get_workflow_handle(run).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    last = await parts.history.last_event(DEFAULT_ORG, run)
    assert last is not None and last.type == "status", "the run was not ended"
    assert parts.metrics.value(START_FAILURES) == 0


async def test_a_start_temporal_does_not_take_within_its_bound_ends_the_run_failed(
    parts: Parts,
) -> None:
    # Starts are given up at half the grace: here after a second.
    starter = parts.starter(start_grace_s=2.0)
    chat = await parts.queue()
    run = chat.conversation_id
    await parts.temporal.stop()

    starter.start_soon(chat, run)
    await starter.close(_START_ENDS_WITHIN_S)

    stored = [e async for e in parts.history.read(DEFAULT_ORG, run, after=0)]
    assert [e.type for e in stored] == ["status", "failed"]
    failed = decode_event(stored[-1].data)
    assert isinstance(failed, Failed) and failed.reason == START_FAILED_REASON
    assert failed.completeness is not None and failed.completeness.events == 1
    assert parts.metrics.value(START_FAILURES) == 1
