"""The local stack's NATS: one node, or a cluster of several on loopback, each from a config file.

Every node has its own client, route and monitoring ports, its own JetStream store and a
``server_name`` (JetStream's Raft groups need one per node). The files are written where the
node's store lives, so a killed node restarts with the same identity and data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

# As in deploy/nats/nats.conf: the cluster the production nodes form.
CLUSTER_NAME = "agentstream"


@dataclass(frozen=True)
class NatsNode:
    """One nats-server: its name (also its process's name in the stack), ports and store."""

    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        """Its monitoring endpoint (/healthz, /jsz, /connz)."""
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def config_path(self) -> Path:
        """Its configuration file, beside its store."""
        return self.store_dir.parent / f"{self.name}.conf"


def node_config(node: NatsNode, nodes: list[NatsNode], sync_interval: str | None) -> str:
    """The configuration of ``node`` in a cluster of ``nodes`` (alone: no cluster block).

    ``sync_interval`` is JetStream's ``sync_interval`` (``always``, or a duration such as
    ``2m``, nats-server's default when None): how often stored messages are fsynced.
    """
    sync = f"\n  sync_interval: {sync_interval}" if sync_interval else ""
    lines = [
        f"server_name: {json.dumps(node.name)}",
        f"listen: 127.0.0.1:{node.client_port}",
        f"http: 127.0.0.1:{node.monitor_port}",
        f"jetstream {{\n  store_dir: {json.dumps(str(node.store_dir))}{sync}\n}}",
    ]
    if len(nodes) > 1:
        routes = "\n".join(
            f"    nats-route://127.0.0.1:{peer.cluster_port}" for peer in nodes if peer != node
        )
        lines.append(
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  routes: [\n{routes}\n  ]\n}}"
        )
    return "\n".join(lines) + "\n"


def write_configs(nodes: list[NatsNode], sync_interval: str | None) -> None:
    """Write every node's configuration file and create its store directory."""
    for node in nodes:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        node.config_path.write_text(node_config(node, nodes, sync_interval), encoding="utf-8")


async def jetstream_healthy(node: NatsNode) -> bool:
    """Whether ``node`` serves JetStream (nats-server's ``/healthz``; in a cluster, it knows the
    meta leader). A restarted node says so before its stream replicas have caught up."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(f"{node.monitor_url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def stream_leader(nodes: list[NatsNode], stream: str) -> str | None:
    """The ``server_name`` of the node leading ``stream``'s Raft group, as the first reachable
    node's ``/jsz`` reports it; None while no node reports a leader."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        for node in nodes:
            try:
                reply = await http.get(f"{node.monitor_url}/jsz", params={"streams": "true"})
            except httpx.HTTPError:
                continue
            for account in reply.json().get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        leader = (detail.get("cluster") or {}).get("leader")
                        if leader:
                            return str(leader)
    return None
