"""A NATS server with JetStream of each test module's own, on a free port, and connections to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path
from agentstream.runtime.nats_contract import ensure_runs_stream


@pytest.fixture(scope="module")
async def nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Where the module's NATS server listens; it stops when the module's tests are done."""
    port = free_port()
    store = Path(tmp_path_factory.mktemp("nats"))
    server = ServiceProcess(
        "nats",
        [binary_path("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        {},
        store,
    )
    await server.start()
    try:
        await server.wait_for_line("Server is ready", 30)
        yield f"nats://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def connections(nats_url: str) -> AsyncIterator[tuple[NATS, NATS]]:
    """A gateway's connection and a producer's, two as in production, with the RUNS stream."""
    gateway = await nats.connect(nats_url)
    producer = await nats.connect(nats_url)
    await ensure_runs_stream(producer.jetstream(), max_age_s=3600, replicas=1)
    try:
        yield gateway, producer
    finally:
        await gateway.close()
        await producer.close()
