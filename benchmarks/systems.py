"""The systems a bench run compares, started as processes and stopped on the way out.

agentstream is the local stack (NATS with JetStream, Temporal, PostgreSQL, agent, worker) with one
gateway replica; the plain relay and the null sink run beside it, the relay on the same NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from agentstream.devstack.nats_cluster import NatsNode, jetstream_healthy, write_configs
from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import LocalStack, StackConfig, binary_path
from benchmarks.generator import Target

_READY_TIMEOUT_S = 60.0
_REPO = Path(__file__).resolve().parents[1]

AGENTSTREAM = "agentstream"
RELAY = "plain relay"
NULL_SINK = "null sink"
# agentstream on a NATS of its own that fsyncs every stored message (``--sync-always``).
AGENTSTREAM_SYNC = "agentstream, sync always"


@dataclass
class Systems:
    """The running systems, and a way to start a fresh server process of each."""

    stack: LocalStack
    targets: dict[str, Target]
    # The server process of each system (agentstream: its gateway), e.g. to profile it.
    pids: dict[str, int | None]
    log_dir: Path

    @contextlib.asynccontextmanager
    async def fresh(self, name: str) -> AsyncIterator[tuple[Target, int]]:
        """A newly started server of system ``name`` (its target and pid), stopped after."""
        port = free_port()
        if name == AGENTSTREAM:
            process = await self.stack.start_gateway(0, name=f"gateway-fresh-{port}", port=port)
            target = Target(name, f"http://127.0.0.1:{port}", True, self.stack.callback_secret)
        else:
            process = await _start_relay(self.stack.nats_url, port, self.log_dir)
            target = Target(name, f"http://127.0.0.1:{port}", False)
        try:
            assert process.pid is not None
            yield target, process.pid
        finally:
            await process.stop()
            self.stack.processes.pop(process.name, None)


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _start_relay(nats_url: str, port: int, log_dir: Path) -> ServiceProcess:
    process = ServiceProcess(
        f"plain-relay-{port}",
        _python_module("benchmarks.plain_relay", "--port", str(port), "--nats", nats_url),
        _env(),
        log_dir,
    )
    await process.start()
    await process.wait_http_ok(f"http://127.0.0.1:{port}/healthz", _READY_TIMEOUT_S)
    return process


async def _start_null_sink(port: int, log_dir: Path) -> ServiceProcess:
    process = ServiceProcess(
        "null-sink", _python_module("benchmarks.null_sink", "--port", str(port)), _env(), log_dir
    )
    await process.start()
    await process.wait_http_ok(f"http://127.0.0.1:{port}/healthz", _READY_TIMEOUT_S)
    return process


async def _start_synced_nats(stack: LocalStack) -> tuple[ServiceProcess, NatsNode]:
    """A NATS like the stack's, but with ``jetstream { sync_interval: always }``: every message
    is fsynced before it is acknowledged. Its store is on the same disk as the stack's."""
    node = NatsNode(
        "nats-sync-always", free_port(), 0, free_port(), stack.state_dir / "nats-sync-always"
    )
    write_configs([node], "always")
    argv = [binary_path("nats-server"), "-c", str(node.config_path)]
    process = ServiceProcess(node.name, argv, dict(os.environ), stack.log_dir)
    await process.start()
    await process.wait_until(lambda: jetstream_healthy(node), _READY_TIMEOUT_S)
    return process, node


@contextlib.asynccontextmanager
async def _synced_gateway(stack: LocalStack) -> AsyncIterator[tuple[Target, int | None]]:
    """A gateway (the stack's Temporal and database) on a NATS that fsyncs every message."""
    nats_process, node = await _start_synced_nats(stack)
    try:
        port = free_port()
        gateway = await stack.start_gateway(
            0, name="gateway-sync-always", port=port, env={"NATS_URL": node.url}
        )
        try:
            url = f"http://127.0.0.1:{port}"
            yield Target(AGENTSTREAM_SYNC, url, True, stack.callback_secret), gateway.pid
        finally:
            await gateway.stop()
    finally:
        await nats_process.stop()


@contextlib.asynccontextmanager
async def running_systems(*, sync_always: bool = False) -> AsyncIterator[Systems]:
    """The stack, a relay and a null sink, all stopped (and their state removed) afterwards;
    with ``sync_always``, also agentstream on a NATS that fsyncs every message."""
    state = Path(tempfile.gettempdir()) / f"agentstream-bench-{os.getpid()}-{time.time_ns()}"
    config = StackConfig(
        state_dir=state,
        fixed_ports=False,
        temporal_ui=False,
        database_url=os.environ.get("DATABASE_URL") or None,
        # Every bench client comes from one address: lift the per-key stream limit.
        service_env={"MAX_STREAMS_PER_KEY": "1000000"},
    )
    stack = LocalStack(config)
    try:
        async with stack.running():
            relay_port, sink_port = free_port(), free_port()
            relay = await _start_relay(stack.nats_url, relay_port, stack.log_dir)
            try:
                sink = await _start_null_sink(sink_port, stack.log_dir)
                try:
                    targets = {
                        NULL_SINK: Target(NULL_SINK, f"http://127.0.0.1:{sink_port}", False),
                        RELAY: Target(RELAY, f"http://127.0.0.1:{relay_port}", False),
                        AGENTSTREAM: Target(
                            AGENTSTREAM, stack.gateway_urls[0], True, stack.callback_secret
                        ),
                    }
                    pids = {
                        NULL_SINK: sink.pid,
                        RELAY: relay.pid,
                        AGENTSTREAM: stack.processes["gateway-0"].pid,
                    }
                    async with contextlib.AsyncExitStack() as extra:
                        if sync_always:
                            synced = await extra.enter_async_context(_synced_gateway(stack))
                            targets[AGENTSTREAM_SYNC], pids[AGENTSTREAM_SYNC] = synced
                        yield Systems(stack, targets, pids, stack.log_dir)
                finally:
                    await sink.stop()
            finally:
                await relay.stop()
    finally:
        await asyncio.to_thread(shutil.rmtree, state, ignore_errors=True)
