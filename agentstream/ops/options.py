"""The options of ``agentstream tail``, ``runs`` and ``inspect``, kept apart from their imports so
the CLI stays quick."""

from __future__ import annotations

import argparse

COMMANDS = ("tail", "runs", "inspect")
RUN_STATES = ("running", "completed", "failed", "cancelled", "terminated", "timed_out")

_NATS_HELP = (
    "NATS server(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222); "
    "credentials from NATS_USER and NATS_PASSWORD or NATS_CREDS, TLS from NATS_TLS_CA/CERT/KEY"
)


def _nats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats-url", metavar="URL", help=_NATS_HELP)
    parser.add_argument("--nats-creds", metavar="FILE", help="NATS credentials file (NATS_CREDS)")


def _temporal(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temporal-address",
        metavar="HOST:PORT",
        help="Temporal frontend (default: TEMPORAL_ADDRESS, else 127.0.0.1:7233)",
    )
    parser.add_argument(
        "--temporal-namespace", metavar="NAME", help="(default: TEMPORAL_NAMESPACE, else default)"
    )


def _database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="DSN",
        help="PostgreSQL holding the answers (default: DATABASE_URL, else 127.0.0.1:5432)",
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the three commands to the CLI's subcommands."""
    tail = sub.add_parser(
        "tail",
        help="print a run's stored events from JetStream, then follow it live to its end",
        description="Each line: event ID, stream sequence.position, type, attempt, producer "
        "time (UTC), a summary. Exits 0 once the terminal event is printed.",
    )
    tail.add_argument("run", help="the run (workflow) ID")
    tail.add_argument(
        "--from",
        dest="from_seq",
        type=int,
        default=1,
        metavar="SEQ",
        help="start at this stream sequence (default: the run's first event)",
    )
    tail.add_argument(
        "--org", help="the run's org (default: read from its stored events; needed to wait)"
    )
    tail.add_argument(
        "--no-follow", action="store_true", help="print what is stored and stop, ended or not"
    )
    _nats(tail)

    runs = sub.add_parser("runs", help="list recent runs with status and org (from Temporal)")
    runs.add_argument("--org", help="only this org's runs")
    runs.add_argument("--status", choices=RUN_STATES, help="only runs in this state")
    runs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    _temporal(runs)

    inspect = sub.add_parser(
        "inspect",
        help="a run's workflow status and heartbeat, stored events and result",
    )
    inspect.add_argument("run", help="the run (workflow) ID")
    _nats(inspect)
    _temporal(inspect)
    _database(inspect)
