"""Running ``agentstream tail``, ``runs`` and ``inspect``: settings, connections, exit codes.

Exit codes: 0 done (``tail``: the terminal event was printed), 1 a service unreachable or the run
unknown, 2 bad input or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec
from nats.errors import Error as NatsError
from temporalio.service import RPCError

from agentstream.ops.connections import OpsSettings, Unreachable, open_nats, open_temporal
from agentstream.ops.run_inspect import inspect_run, print_inspection
from agentstream.ops.run_list import print_runs, recent_runs
from agentstream.ops.run_tail import RunNotFound, tail
from agentstream.runtime.run_history import HistoryUnavailable
from agentstream.runtime.settings import ConfigError
from schemas import is_valid_id

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Usage(Exception):
    """Input the command cannot use."""


def settings_of(args: argparse.Namespace) -> OpsSettings:
    """The environment's settings, with the command line's flags over them."""
    settings = OpsSettings.from_env()
    nats_url = getattr(args, "nats_url", None)
    creds = getattr(args, "nats_creds", None)
    address = getattr(args, "temporal_address", None)
    namespace = getattr(args, "temporal_namespace", None)
    database_url = getattr(args, "database_url", None)
    nats = msgspec.structs.replace(
        settings.nats,
        url=nats_url or settings.nats.url,
        creds_file=creds or settings.nats.creds_file,
    )
    temporal = msgspec.structs.replace(
        settings.temporal,
        address=address or settings.temporal.address,
        namespace=namespace or settings.temporal.namespace,
    )
    return msgspec.structs.replace(
        settings, nats=nats, temporal=temporal, database_url=database_url or settings.database_url
    )


def _run_id(args: argparse.Namespace) -> str:
    run = str(args.run)
    if not is_valid_id(run):
        raise _Usage(f"invalid run ID {run!r}: 1-64 letters, digits, '_' or '-'")
    return run


async def _tail(args: argparse.Namespace, settings: OpsSettings) -> int:
    run = _run_id(args)
    if args.org is not None and not is_valid_id(args.org):
        raise _Usage(f"invalid org {args.org!r}: 1-64 letters, digits, '_' or '-'")
    if args.from_seq < 1:
        raise _Usage("--from takes a stream sequence, 1 or more")
    nc = await open_nats(settings.nats, name="agentstream-tail")
    try:
        await tail(nc, run, org=args.org, from_seq=args.from_seq, follow=not args.no_follow)
    finally:
        await nc.close()
    return EXIT_OK


async def _runs(args: argparse.Namespace, settings: OpsSettings) -> int:
    if args.org is not None and not is_valid_id(args.org):
        raise _Usage(f"invalid org {args.org!r}: 1-64 letters, digits, '_' or '-'")
    if args.limit < 1:
        raise _Usage("--limit takes 1 or more")
    client = await open_temporal(settings.temporal)
    print_runs(await recent_runs(client, org=args.org, status=args.status, limit=args.limit))
    return EXIT_OK


async def _inspect(args: argparse.Namespace, settings: OpsSettings) -> int:
    found = await inspect_run(_run_id(args), settings)
    print_inspection(found)
    if not found.known and not found.problems:
        print(f"agentstream inspect: no service knows run {found.run}", file=sys.stderr)
    return EXIT_OK if found.known and not found.problems else EXIT_FAILED


_COMMANDS = {"tail": _tail, "runs": _runs, "inspect": _inspect}


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; its exit code."""
    name = args.command
    try:
        settings = settings_of(args)
        return asyncio.run(_COMMANDS[name](args, settings))
    except (ConfigError, _Usage) as exc:
        print(f"agentstream {name}: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (Unreachable, RunNotFound) as exc:
        print(f"agentstream {name}: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except RPCError as exc:
        print(f"agentstream {name}: Temporal answered: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except (NatsError, HistoryUnavailable) as exc:
        print(f"agentstream {name}: lost NATS: {exc!r}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
