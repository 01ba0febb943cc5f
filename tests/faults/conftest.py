"""A stack of its own for fault tests, so what they break never reaches other tests."""

from __future__ import annotations

from tests.stacks import stack_fixture

CLIENT_QUEUE = 64


# Three gateway replicas, a worker and an agent whose runs last a few seconds.
fault_stack = stack_fixture(
    "faults",
    replicas=3,
    # Slow enough that "mid-run" is a window of seconds, not milliseconds.
    token_delay_s="0.03",
    service_env={
        "SSE_CLIENT_QUEUE": str(CLIENT_QUEUE),
        "SSE_IDLE_CHECK_S": "1",
        "SSE_TERMINAL_CHECK_S": "3",
        "SSE_SHUTDOWN_GRACE_S": "0.2",
    },
)
