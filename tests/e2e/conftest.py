"""Fixtures of the end-to-end tests beyond the stack itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from agentstream.devstack.stack import LocalStack


@pytest.fixture
async def nc(stack: LocalStack) -> AsyncIterator[NATS]:
    """A NATS connection to the stack's server."""
    conn = await nats.connect(stack.nats_url)
    try:
        yield conn
    finally:
        await conn.close()
