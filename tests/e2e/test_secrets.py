"""Secrets: no service runs on the built-in callback secret by accident, and the agent holds none.

The agent runs sandbox commands; whatever is in its environment they could read (from
``/proc/<pid>/environ``) where they share its user. It gets per-run callback tokens and a
read-only DSN, never the callback secret or the admin DSN.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agentstream.devstack.demo_dataset import reader_dsn
from agentstream.devstack.processes import free_port
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.settings import DEV_CALLBACK_SECRET
from tests.commands import run_to_end


def _environ_of(pid: int) -> dict[str, str]:
    """The environment a process was started with, as the kernel shows it to anyone who may look."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def _assert_holds_no_secret(environ: dict[str, str], stack: LocalStack) -> None:
    assert "CALLBACK_SECRET" not in environ and "DATABASE_URL" not in environ
    values = "\n".join(environ.values())
    assert stack.callback_secret not in values, "the callback secret, under any name"
    assert stack.database_url not in values, "the admin DSN, under any name"
    assert environ["AGENT_DATABASES"] == f"demo={reader_dsn(stack.database_url)}"


async def test_the_stacks_agent_holds_neither_the_callback_secret_nor_the_admin_dsn(
    stack: LocalStack,
) -> None:
    pid = stack.processes["agent"].pid
    assert pid is not None
    _assert_holds_no_secret(_environ_of(pid), stack)
    # The services that need the secret do get it: the stack runs on its own, never the dev one.
    gateway = _environ_of(stack.processes["gateway-0"].pid or 0)
    assert gateway["CALLBACK_SECRET"] == stack.callback_secret != DEV_CALLBACK_SECRET


async def test_an_agent_started_from_a_shell_that_exports_the_secrets_gets_neither(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when a developer exported them to run a gateway by hand, then ran the stack.
    monkeypatch.setenv("CALLBACK_SECRET", stack.callback_secret)
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    agent = await stack.start_agent(name="agent-secrets", port=free_port())
    try:
        assert agent.pid is not None
        _assert_holds_no_secret(_environ_of(agent.pid), stack)
    finally:
        await agent.stop()


async def _start_alone(service: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``agentstream <service>`` with only ``env``; its exit code and output.

    Every address points at a port nothing listens on: a service that does not refuse at once
    finds nothing to connect to (and never touches a shared server).
    """
    dead = f"127.0.0.1:{free_port()}"
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NATS_URL": f"nats://{dead}",
        "TEMPORAL_ADDRESS": dead,
        **env,
    }
    argv = [sys.executable, "-m", "agentstream", service]
    if service != "worker":
        argv += ["--port", str(free_port())]
    try:
        return await run_to_end(*argv, timeout_s=60, env=clean)
    except TimeoutError:
        pytest.fail(f"agentstream {service} did not refuse to start: it ran for 60 s")


REFUSALS = {
    "gateway-unset": ("gateway", {}, "CALLBACK_SECRET is not set"),
    "gateway-dev": (
        "gateway",
        {"CALLBACK_SECRET": DEV_CALLBACK_SECRET},
        "CALLBACK_SECRET is the built-in development secret",
    ),
    "gateway-placeholder": (
        "gateway",
        {"CALLBACK_SECRET": "CHANGE-ME"},
        "CALLBACK_SECRET is the deploy template's placeholder",
    ),
    "worker-unset": ("worker", {}, "CALLBACK_SECRET is not set"),
    "worker-dev": (
        "worker",
        {"CALLBACK_SECRET": DEV_CALLBACK_SECRET},
        "CALLBACK_SECRET is the built-in development secret",
    ),
    "agent-secret": (
        "agent",
        {"CALLBACK_SECRET": "0123456789abcdef0123456789abcdef"},
        "CALLBACK_SECRET is set, but the agent must not hold it",
    ),
    "agent-admin-dsn": (
        "agent",
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"},
        "DATABASE_URL is set, but the agent must not hold it",
    ),
}


@pytest.mark.parametrize(("service", "env", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_service_outside_the_local_stack_refuses_to_start_without_a_real_secret(
    service: str, env: dict[str, str], reason: str
) -> None:
    code, output = await _start_alone(service, env)
    assert code == 2, output
    assert f"agentstream {service}: configuration error: {reason}" in output
    assert "Traceback" not in output
