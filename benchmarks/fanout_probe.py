"""Probe of the gateway's SSE side alone: fan-out of one run to N readers, and idle memory.

``fanout``: one run, N readers on raw sockets (so the reader is never the bottleneck), events
posted through the bridge as fast as it takes them; prints deliveries/s (events x readers over
the time from the first post to the last delivery) and the CPU each side used.
``idle``: on a fresh gateway, N connections each on its own run (or all on one run with
``--one-run``), held open; prints the gateway's RSS growth per connection.
The gateway's pid is printed so a profiler (py-spy) can be attached while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import nats
import psutil

from agentstream.devstack.stack import LocalStack, StackConfig
from agentstream.runtime.nats_contract import Producer, message_headers, run_subject
from agentstream.runtime.tokens import TokenClaims, mint_token

_STATE = Path(tempfile.gettempdir()) / f"agentstream-probe-{os.getpid()}"


def _raise_file_limit() -> None:
    # The gateway inherits it: 10,000 connections need 10,000 descriptors on each side.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Reader:
    """One SSE connection read as raw bytes: counts event frames, nothing else."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.frames = 0
        self.opened = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, until: int | None) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.writer = writer
        request = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
        writer.write(request.encode())
        tail = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if not self.opened.is_set() and b": run" in chunk:
                self.opened.set()
            data = tail + chunk
            self.frames += data.count(b"event: token")
            tail = data[-16:]
            if until is not None and self.frames >= until:
                writer.close()
                return


async def _post(http: httpx.AsyncClient, url: str, token: str, body: object) -> None:
    answer = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()


def _token(stack: LocalStack, run: str) -> str:
    claims = TokenClaims(
        kind="callback", run=run, org="default", attempt=1, exp=int(time.time()) + 3600
    )
    return mint_token(stack.callback_secret, claims)


async def fanout(stack: LocalStack, readers: int, events: int, batch: int, direct: bool) -> None:
    gateway = stack.gateway_urls[0]
    parts = urlsplit(gateway)
    run = f"run_fan_{time.time_ns()}"
    token = _token(stack, run)
    chunk_url = f"{gateway}/api/stream/{run}/chunk"
    gw = psutil.Process(stack.processes["gateway-0"].pid)
    me = psutil.Process()
    async with httpx.AsyncClient(timeout=30) as http:
        await _post(
            http, chunk_url, token, {"type": "status", "run": run, "stage": "agent_started"}
        )
        clients = [
            _Reader(parts.hostname or "127.0.0.1", parts.port or 80, f"/api/stream/{run}")
            for _ in range(readers)
        ]
        tasks = [asyncio.create_task(c.run(events)) for c in clients]
        async with asyncio.timeout(60):
            for c in clients:
                await c.opened.wait()
        print(f"gateway pid {gw.pid}; {readers} readers open", flush=True)
        gw_cpu0, me_cpu0 = gw.cpu_times(), me.cpu_times()
        started = time.perf_counter()
        if direct:
            # Straight into the stream, pipelined: measures the gateway's fan-out, not its bridge.
            nc = await nats.connect(stack.nats_url)
            for n in range(events):
                data = b'{"type":"token","run":"%b","n":%d,"text":"%b","ts":%d}' % (
                    run.encode(),
                    n + 1,
                    b"x" * 32,
                    time.time_ns(),
                )
                headers = message_headers(run, Producer.PROBE, 1, n, ["token"])
                await nc.publish(run_subject("default", run), data, headers=headers)
            await nc.flush()
            await nc.close()
        for start in range(0, events if not direct else 0, batch):
            body = [
                {"type": "token", "run": run, "n": n + 1, "text": "x" * 32, "ts": time.time_ns()}
                for n in range(start, min(start + batch, events))
            ]
            await _post(http, chunk_url, token, body)
        posted_s = time.perf_counter() - started
        async with asyncio.timeout(300):
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        gw_cpu1, me_cpu1 = gw.cpu_times(), me.cpu_times()
    assert all(c.frames == events for c in clients), [c.frames for c in clients]
    gw_cpu = gw_cpu1.user + gw_cpu1.system - gw_cpu0.user - gw_cpu0.system
    me_cpu = me_cpu1.user + me_cpu1.system - me_cpu0.user - me_cpu0.system
    print(
        f"fan-out: {events} events x {readers} readers in {elapsed:.2f} s "
        f"(posted in {posted_s:.2f} s): {events * readers / elapsed:,.0f} deliveries/s; "
        f"CPU gateway {gw_cpu / elapsed:.0%}, probe {me_cpu / elapsed:.0%}"
    )


async def idle(stack: LocalStack, connections: int, one_run: bool) -> None:
    gateway = stack.gateway_urls[0]
    parts = urlsplit(gateway)
    stamp = time.time_ns()
    runs = [f"run_idle_{stamp}_{i}" for i in range(1 if one_run else connections)]
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        sem = asyncio.Semaphore(16)

        async def start(run: str) -> None:
            async with sem:
                body = {"type": "status", "run": run, "stage": "agent_started"}
                await _post(http, f"{gateway}/api/stream/{run}/chunk", _token(stack, run), body)

        await asyncio.gather(*(start(r) for r in runs))
    gw = psutil.Process(stack.processes["gateway-0"].pid)
    before = gw.memory_info().rss
    clients = [
        _Reader(
            parts.hostname or "127.0.0.1", parts.port or 80, f"/api/stream/{runs[i % len(runs)]}"
        )
        for i in range(connections)
    ]
    tasks = []
    for i in range(0, connections, 200):
        group = clients[i : i + 200]
        tasks += [asyncio.create_task(c.run(None)) for c in group]
        async with asyncio.timeout(120):
            for c in group:
                await c.opened.wait()
    # Let the gateway finish whatever the openings started (history reads, subscriptions).
    await asyncio.sleep(3)
    after = gw.memory_info().rss
    print(
        f"idle: {connections} connections on {len(runs)} run(s): RSS {before / 2**20:.1f} -> "
        f"{after / 2**20:.1f} MiB, {(after - before) / connections / 1024:.1f} KiB per connection",
        flush=True,
    )
    for c in clients:
        if c.writer is not None:
            c.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def main_async(args: argparse.Namespace) -> None:
    config = StackConfig(
        state_dir=_STATE,
        fixed_ports=False,
        temporal_ui=False,
        service_env={"MAX_STREAMS_PER_KEY": "100000", "RATE_LIMIT_RPS": "100000", **args.env},
    )
    stack = LocalStack(config)
    try:
        async with stack.running():
            if args.mode == "fanout":
                for _ in range(args.repeat):
                    await fanout(stack, args.readers, args.events, args.batch, args.direct)
            else:
                await idle(stack, args.connections, args.one_run)
    finally:
        shutil.rmtree(_STATE, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["fanout", "idle"])
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1_000)
    parser.add_argument("--one-run", action="store_true")
    parser.add_argument("--direct", action="store_true", help="publish to NATS, not the bridge")
    parser.add_argument("--env", type=lambda s: dict([s.split("=", 1)]), default={})
    args = parser.parse_args()
    _raise_file_limit()
    asyncio.run(main_async(args))
    sys.stdout.flush()
    # temporalio's native runtime can crash at interpreter exit; everything is closed by now.
    os._exit(0)


if __name__ == "__main__":
    main()
