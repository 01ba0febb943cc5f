"""How fast and how lean the stream path is: bridge → NATS → one gateway → N SSE clients.

Prints events/s stored through the bridge, events/s delivered to all clients, the latency from
an event's producer timestamp to its arrival at a client (p50/p99), and the gateway's memory
per connected SSE client. Everything runs on loopback against a local stack it starts itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from agentstream.sse_client import read_stream
from agentstream.stack import LocalStack, StackConfig
from agentstream.tokens import TokenClaims, mint_token

_STATE = Path(tempfile.gettempdir()) / f"agentstream-bench-{os.getpid()}"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _client(http: httpx.AsyncClient, url: str, total: int, latencies: list[float]) -> int:
    received = 0
    async for message in read_stream(http, url):
        if message.event == "token":
            sent_ns = int(message.json()["ts"])
            latencies.append((time.time_ns() - sent_ns) / 1e6)
            received += 1
            if received == total:
                return received
    return received


async def bench(events: int, clients: int, batch: int, idle_clients: int) -> None:
    config = StackConfig(
        state_dir=_STATE,
        fixed_ports=False,
        temporal_ui=False,
        # Every benchmark client comes from one address: lift the per-key stream limit.
        service_env={"MAX_STREAMS_PER_KEY": str(clients + idle_clients + 10)},
    )
    stack = LocalStack(config)
    async with stack.running():
        gateway = stack.gateway_urls[0]
        run = f"run_bench_{time.time_ns()}"
        quiet = f"run_quiet_{time.time_ns()}"

        def token_for(run_id: str) -> str:
            claims = TokenClaims(
                kind="callback", run=run_id, org="default", attempt=1, exp=int(time.time()) + 3600
            )
            return mint_token(stack.callback_secret, claims)

        token = token_for(run)
        limits = httpx.Limits(max_connections=clients + idle_clients + 10)
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
            headers = {"Authorization": f"Bearer {token}"}
            first = await http.post(
                f"{gateway}/api/stream/{run}/chunk",
                json={"type": "status", "run": run, "stage": "agent_started", "n": 0},
                headers=headers,
            )
            first.raise_for_status()
            # Idle clients hold streams of a quiet run: many open browsers, few busy runs.
            opened = await http.post(
                f"{gateway}/api/stream/{quiet}/chunk",
                json={"type": "status", "run": quiet, "stage": "agent_started", "n": 0},
                headers={"Authorization": f"Bearer {token_for(quiet)}"},
            )
            opened.raise_for_status()
            process = psutil.Process(stack.processes["gateway-0"].pid)
            rss_before = process.memory_info().rss

            idle_streams = [
                asyncio.create_task(_client(http, f"{gateway}/api/stream/{quiet}", 10**9, []))
                for _ in range(idle_clients)
            ]
            latencies: list[float] = []
            readers = [
                asyncio.create_task(_client(http, f"{gateway}/api/stream/{run}", events, latencies))
                for _ in range(clients)
            ]
            # Let every client's stream open before the producer starts.
            async with asyncio.timeout(30):
                while process.num_fds() < clients + idle_clients:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            rss_connected = process.memory_info().rss

            started = time.perf_counter()
            for start in range(1, events + 1, batch):
                body = [
                    {"type": "token", "run": run, "n": n, "text": "x" * 32, "ts": time.time_ns()}
                    for n in range(start, min(start + batch, events + 1))
                ]
                (
                    await http.post(f"{gateway}/api/stream/{run}/chunk", json=body, headers=headers)
                ).raise_for_status()
            stored_s = time.perf_counter() - started
            delivered = await asyncio.gather(*readers)
            delivered_s = time.perf_counter() - started
            for task in idle_streams:
                task.cancel()
            await asyncio.gather(*idle_streams, return_exceptions=True)

    assert all(count == events for count in delivered), delivered
    total_clients = clients + idle_clients
    print(f"events {events}, batch {batch}, reading clients {clients}, idle clients {idle_clients}")
    print(f"stored through the bridge: {events / stored_s:,.0f} events/s")
    print(
        f"delivered to clients:      {events * clients / delivered_s:,.0f} events/s "
        f"({clients} clients x {events} events in {delivered_s:.2f} s)"
    )
    print(
        f"latency producer → client: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {_percentile(latencies, 0.99):.1f} ms"
    )
    per_client = (rss_connected - rss_before) / max(1, total_clients)
    print(f"gateway memory per SSE client: {per_client / 1024:,.1f} KiB ({total_clients} clients)")
    ratio = (events * clients / delivered_s) / (events / stored_s)
    print(f"fan-out ratio delivered/stored: {ratio:.1f}")


async def bench_and_clean(events: int, clients: int, batch: int, idle_clients: int) -> None:
    """Run the benchmark; its temporary state never outlives it."""
    try:
        await bench(events, clients, batch, idle_clients)
    finally:
        shutil.rmtree(_STATE, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--idle-clients", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(bench_and_clean(args.events, args.clients, args.batch, args.idle_clients))
    sys.stdout.flush()
    # temporalio's native runtime can crash at interpreter exit; everything is closed by now.
    os._exit(0)


if __name__ == "__main__":
    main()
