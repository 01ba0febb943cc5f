"""A NATS server with JetStream of each test module's own, on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path


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
