"""A stack of its own for fault tests, so what they break never reaches other tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentstream.devstack.stack import LocalStack, StackConfig

CLIENT_QUEUE = 64


@pytest.fixture(scope="module")
async def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    """Three gateway replicas, a worker and an agent whose runs last a few seconds."""
    config = StackConfig(
        state_dir=Path(tmp_path_factory.mktemp("faults")),
        replicas=3,
        fixed_ports=False,
        temporal_ui=False,
        database_url=os.environ.get("DATABASE_URL") or None,
        # Slow enough that "mid-run" is a window of seconds, not milliseconds.
        agent_env={"SCRIPTED_TOKEN_DELAY_S": "0.03"},
        service_env={
            "SSE_CLIENT_QUEUE": str(CLIENT_QUEUE),
            "SSE_IDLE_CHECK_S": "1",
            "SSE_TERMINAL_CHECK_S": "3",
            "SSE_SHUTDOWN_GRACE_S": "0.2",
        },
    )
    stack = LocalStack(config)
    async with stack.running():
        yield stack
