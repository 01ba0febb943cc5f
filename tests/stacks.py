"""A stack of a test's own: real processes on free ports, in a fresh folder, set up as asked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from agentstream.devstack.processes import free_port
from agentstream.devstack.stack import LocalStack, StackConfig


@contextlib.asynccontextmanager
async def own_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    token_delay_s: str,
    service_env: dict[str, str],
    **config: Any,
) -> AsyncIterator[LocalStack]:
    """A running stack in a fresh folder named after ``name``, stopped on leaving.

    Its agent's scripted tokens come ``token_delay_s`` apart, every service gets
    ``service_env``, and ``config`` sets the rest of its ``StackConfig`` (``replicas``,
    ``nats_nodes``, …). No fixed ports and no Temporal UI, so that it runs beside any other
    stack; ``DATABASE_URL`` names the PostgreSQL it uses, if set.
    """
    local = LocalStack(
        StackConfig(
            state_dir=Path(tmp_path_factory.mktemp(name)),
            fixed_ports=False,
            temporal_ui=False,
            database_url=os.environ.get("DATABASE_URL") or None,
            agent_env={"SCRIPTED_TOKEN_DELAY_S": token_delay_s},
            service_env=service_env,
            **config,
        )
    )
    async with local.running():
        yield local


def stack_fixture(
    name: str, *, scope: Literal["session", "module"] = "module", **settings: Any
) -> Any:
    """A fixture of a stack of its own (``own_stack(name, **settings)``), started once per
    ``scope``: assigned to a module's name, that name is the fixture's."""

    @pytest.fixture(scope=scope)
    async def fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
        async with own_stack(tmp_path_factory, name, **settings) as local:
            yield local

    return fixture


@contextlib.asynccontextmanager
async def extra_gateway(stack: LocalStack, name: str, env: dict[str, str]) -> AsyncIterator[str]:
    """One more gateway replica of ``stack``, on a free port and set up with ``env`` (limits,
    keys): its URL, for as long as the block runs."""
    port = free_port()
    process = await stack.start_gateway(0, name=name, port=port, env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await process.stop()
