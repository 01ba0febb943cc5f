"""The options of ``agentstream loadtest``, kept apart from its imports so the CLI stays quick."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_MESSAGE = "Write a short script that counts the words of this sentence and run it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``loadtest`` options."""
    target = parser.add_argument_group("target (one of)")
    target.add_argument(
        "--gateway",
        action="append",
        metavar="URL",
        help="a gateway replica to drive (repeatable; runs and readers are spread over them)",
    )
    target.add_argument(
        "--stack", action="store_true", help="bring up a local stack of its own for the test"
    )
    target.add_argument("--replicas", type=int, default=2, help="gateway replicas of --stack")
    target.add_argument(
        "--stack-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for every service of --stack (repeatable)",
    )
    target.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="no load: print the combined report of --json files from several machines",
    )
    load = parser.add_argument_group("load")
    load.add_argument("--runs", type=int, default=20, help="runs to start (default 20)")
    load.add_argument("--readers", type=int, default=2, help="SSE readers per run (default 2)")
    load.add_argument(
        "--resume-fraction",
        type=float,
        default=0.5,
        help="share of readers that drop once and resume on another replica (default 0.5)",
    )
    load.add_argument(
        "--drop-within",
        type=int,
        default=10,
        metavar="EVENTS",
        help="a dropping reader leaves after a random 1..EVENTS events (default 10)",
    )
    load.add_argument(
        "--rate", type=float, default=0.0, help="runs started per second (default: all at once)"
    )
    load.add_argument(
        "--deadline", type=float, default=600.0, help="seconds a run may take (default 600)"
    )
    load.add_argument("--message", default=DEFAULT_MESSAGE, help="what every run is asked")
    load.add_argument("--org", help="org to start runs in")
    load.add_argument(
        "--api-key",
        default=os.environ.get("AGENTSTREAM_API_KEY", ""),
        help="bearer API key for POST /api/messages (or AGENTSTREAM_API_KEY)",
    )
    load.add_argument("--seed", type=int, help="seed for drop points (repeatable runs)")
    load.add_argument(
        "--idle-timeout",
        type=float,
        default=45.0,
        help="a stream silent this long (keepalives included) counts as broken (default 45)",
    )
    load.add_argument(
        "--post-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for POST /api/messages before retrying it (default 60)",
    )
    kill = parser.add_argument_group("replica failure (--stack only)")
    kill.add_argument(
        "--kill-replica-after", type=float, metavar="S", help="SIGKILL a gateway after S seconds"
    )
    kill.add_argument(
        "--kill-at-fraction",
        type=float,
        metavar="F",
        help="SIGKILL a gateway once F of the runs have finished",
    )
    kill.add_argument(
        "--kill-replica", type=int, default=0, metavar="I", help="which replica (default 0)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report here")


def stack_env(items: list[str]) -> dict[str, str]:
    """``--stack-env KEY=VALUE`` items as a mapping."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--stack-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def check(args: argparse.Namespace) -> str | None:
    """Why the options cannot work together, if they cannot."""
    if args.merge:
        return None
    if bool(args.gateway) == bool(args.stack):
        return "give either --gateway URL (repeatable) or --stack"
    kills = args.kill_replica_after is not None or args.kill_at_fraction is not None
    if kills and not args.stack:
        return "--kill-replica-after / --kill-at-fraction need --stack (it kills its own replica)"
    if kills and args.replicas < 2:
        return "killing a replica needs --replicas 2 or more, for its readers to resume on"
    if args.stack and not 0 <= args.kill_replica < args.replicas:
        return f"--kill-replica must be 0..{args.replicas - 1}"
    if args.runs < 1 or args.readers < 1 or args.drop_within < 1:
        return "--runs, --readers and --drop-within must be at least 1"
    if not 0.0 <= args.resume_fraction <= 1.0:
        return "--resume-fraction must be between 0 and 1"
    return None


def settings_of(args: argparse.Namespace) -> dict[str, object]:
    """The options worth keeping in the JSON report (the API key is not)."""
    keep = ["gateway", "stack", "replicas", "runs", "readers", "resume_fraction", "drop_within"]
    keep += ["rate", "deadline", "message", "org", "seed"]
    keep += ["kill_replica_after", "kill_at_fraction", "kill_replica"]
    return {name: getattr(args, name) for name in keep}
