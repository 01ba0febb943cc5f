"""``make bench``: agentstream against a plain relay, driven by one load generator.

Starts the local stack (one gateway replica), the plain relay (same NATS, same uvicorn settings)
and the null sink (the generator's own ceiling), runs every scenario against each, repetitions
interleaved so drift hits all systems alike, and prints medians, integrity and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

import psutil
import uvloop

from benchmarks.report import Cell, as_json, durability_table, table
from benchmarks.scenarios import Options, Result, Scenario, scenarios
from benchmarks.systems import AGENTSTREAM, AGENTSTREAM_SYNC, NULL_SINK, RELAY, running_systems

Rows = list[tuple[Scenario, dict[str, Cell]]]

# The rows ``--sync-always`` also runs on a NATS that fsyncs every message: what the bridge
# stores is what durability costs.
SYNC_ROWS = ("ingest_single", "ingest_batch50")


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def raise_file_limit(wanted: int) -> None:
    """Lift this process's open-file limit (children, the servers too, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def bench(
    options: Options, repetitions: int, only: set[str] | None, *, sync_always: bool = False
) -> Rows:
    """Every scenario (or those in ``only``) on every system it applies to; with
    ``sync_always``, the ingest rows on agentstream over a NATS that fsyncs every message too."""
    rows: Rows = []
    async with running_systems(sync_always=sync_always) as systems:
        print(f"servers: {systems.pids} (profile one with py-spy, see README)", flush=True)
        for scenario in scenarios(options):
            if only and scenario.key not in only:
                continue
            names = scenario.only or (NULL_SINK, RELAY, AGENTSTREAM)
            if sync_always and scenario.key in SYNC_ROWS:
                names = (*names, AGENTSTREAM_SYNC)
            results: dict[str, list[Result]] = {name: [] for name in names}
            for _ in range(repetitions):
                for name in names:
                    results[name].append(await scenario.run(systems, name, options))
            cells = {name: Cell.of(found) for name, found in results.items()}
            rows.append((scenario, cells))
            print(
                f"{scenario.label}: "
                + "; ".join(f"{name} {cell.text(scenario)}" for name, cell in cells.items()),
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse options, run, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=3, help="median of this many")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per timed phase")
    parser.add_argument("--readers", type=int, default=100, help="fan-out readers")
    parser.add_argument("--fanout-events", type=int, default=300)
    parser.add_argument("--idle", type=int, action="append", help="idle connections (repeatable)")
    parser.add_argument("--idle-10k", action="store_true", help="also 10,000 idle connections")
    parser.add_argument("--messages", type=int, default=7, help="POST /api/messages samples")
    parser.add_argument("--only", action="append", help="scenario key (repeatable)")
    parser.add_argument("--json", type=Path, default=Path(".run/bench.json"))
    parser.add_argument(
        "--sync-always",
        action="store_true",
        help="also run the ingest rows against a NATS with jetstream sync_interval: always",
    )
    args = parser.parse_args(argv)
    idle = tuple(args.idle or [1_000]) + ((10_000,) if args.idle_10k else ())
    options = Options(
        duration_s=args.duration,
        fanout_events=args.fanout_events,
        readers=args.readers,
        idle_connections=idle,
        messages=args.messages,
    )
    # Each idle connection is a descriptor on both ends; room for the largest set and the rest.
    raise_file_limit(2 * max(idle) + 4_096)
    # The generator on uvloop, as the servers are: a socket read costs it less Python.
    only = set(args.only) if args.only else None
    rows = uvloop.run(bench(options, args.repetitions, only, sync_always=args.sync_always))
    info = machine()
    print(
        f"\nmachine: {info['nproc']} cores, {info['cpu']}, {info['ram_gb']} GB RAM; "
        f"medians of {args.repetitions}; [integrity, load generator CPU % of one core, "
        "server process CPU per delivery (fan-out)]\n"
    )
    print(table(rows))
    if args.sync_always:
        print("\nDurability: the same rows on a NATS that fsyncs every message\n")
        print(durability_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(as_json(rows, info), indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.json}")
    sys.stdout.flush()
    # temporalio's native runtime can crash at interpreter exit; everything is closed by now.
    os._exit(0)


if __name__ == "__main__":
    main()
