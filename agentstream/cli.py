"""The ``agentstream`` command: run the local stack, chat with it, or run one service."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from agentstream.runtime.log_format import configure_logging
from agentstream.runtime.settings import DEFAULT_GATEWAY_URL, ConfigError, LogSettings
from agentstream.runtime.tracing import configure as configure_tracing
from agentstream.runtime.tracing import shutdown as shutdown_tracing

_Settings = TypeVar("_Settings")

DEMO_PROMPTS = (
    "Write a short script that analyses this sentence, run it, and tell me what it found.",
    "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi",
)


def _exit(code: int) -> NoReturn:
    """Leave without interpreter teardown, where temporalio's native runtime can crash."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _configured(command: str, read: Callable[[], _Settings]) -> _Settings:
    """A service's settings, or exit 2 with the reason (no traceback: it is the user's to fix)."""
    try:
        return read()
    except ConfigError as exc:
        print(f"agentstream {command}: configuration error: {exc}", file=sys.stderr, flush=True)
        _exit(2)


def _stack_config(args: argparse.Namespace) -> object:
    from agentstream.devstack.stack import StackConfig

    return StackConfig(
        state_dir=Path(args.state_dir),
        replicas=args.replicas,
        orgs=args.org or ["default"],
        database_url=os.environ.get("DATABASE_URL") or None,
        nats_nodes=args.nats_nodes,
    )


def _print_stack(stack: object) -> None:
    from agentstream.devstack.stack import LocalStack

    assert isinstance(stack, LocalStack)
    print("agentstream local stack is up", flush=True)
    for url in stack.gateway_urls:
        print(f"  gateway      {url}   (POST /api/messages, GET /api/stream/{{id}})")
    print(f"  agent        {stack.agent_url}")
    print(f"  nats         {stack.nats_url}   (monitoring {stack.nats_monitor_url})")
    print(f"  temporal     {stack.temporal_address}", end="")
    print(f"   (UI http://127.0.0.1:{stack.temporal_ui_port})" if stack.config.temporal_ui else "")
    assert stack.database is not None
    from agentstream.devstack.postgres import redact_dsn

    print(f"  postgres     {redact_dsn(stack.database.dsn)}   ({stack.database.source})")
    print(f"  logs         {stack.log_dir}")
    model = os.environ.get("AGENT_MODEL") or "offline-scripted (no LLM configured)"
    print(f"  model        {model}")
    print("  auth         open: no API keys configured (local stack)", flush=True)


async def _up(args: argparse.Namespace) -> int:
    from agentstream.devstack.stack import LocalStack

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = LocalStack(_stack_config(args))  # type: ignore[arg-type]
    async with stack.running():
        _print_stack(stack)
        print("Ctrl-C stops every process.", flush=True)
        await stop.wait()
        print("stopping…", flush=True)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from agentstream.devstack.chat_client import chat
    from agentstream.devstack.stack import LocalStack

    stack = LocalStack(_stack_config(args))  # type: ignore[arg-type]
    async with stack.running():
        _print_stack(stack)
        code = 0
        for prompt in args.prompt or DEMO_PROMPTS:
            print(f"\n$ agentstream chat {prompt!r}", flush=True)
            code = code or await chat(prompt, stack.gateway_urls[0])
        print("\nstopping the stack…", flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="agentstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--replicas", type=int, default=1, help="gateway replicas (ports 8000…)")
        p.add_argument(
            "--nats-nodes",
            type=int,
            default=1,
            help="NATS nodes (ports 4222…); more than one: a cluster, stream RUNS on up to 3",
        )
        p.add_argument("--org", action="append", help="org the worker serves (repeatable)")
        p.add_argument("--state-dir", default=".run", help="where NATS and Temporal keep state")

    up = sub.add_parser("up", help="run the whole local stack in the foreground")
    stack_options(up)
    demo = sub.add_parser("demo", help="bring the stack up, run one chat, stop it")
    stack_options(demo)
    demo.add_argument("prompt", nargs="*", help="prompts to run (default: two samples)")

    chat_p = sub.add_parser("chat", help="send a message and print the run as it streams")
    chat_p.add_argument("prompt")
    chat_p.add_argument(
        "--gateway", default=os.environ.get("AGENTSTREAM_GATEWAY") or DEFAULT_GATEWAY_URL
    )
    chat_p.add_argument("--org")
    chat_p.add_argument(
        "--api-key",
        default=os.environ.get("AGENTSTREAM_API_KEY", ""),
        help="or AGENTSTREAM_API_KEY",
    )

    from agentstream.devstack.loadtest.options import add_arguments as loadtest_arguments

    loadtest = sub.add_parser(
        "loadtest",
        help="start many runs at once, read each from several replicas, check every event",
    )
    loadtest_arguments(loadtest)

    from agentstream.ops.options import COMMANDS as OPS_COMMANDS
    from agentstream.ops.options import add_commands as add_ops_commands

    add_ops_commands(sub)

    gateway = sub.add_parser("gateway", help="run one gateway replica")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8000)
    agent = sub.add_parser("agent", help="run the agent service")
    agent.add_argument("--host", default="127.0.0.1")
    agent.add_argument("--port", type=int, default=8100)
    worker = sub.add_parser("worker", help="run a Temporal worker")
    worker.add_argument("--org", action="append", help="org to serve (repeatable)")

    args = parser.parse_args(argv)
    default_level = "INFO" if args.command in ("worker",) else "WARNING"
    logs = _configured(args.command, LogSettings.from_env)
    configure_logging(logs.level or default_level, logs.format)

    if args.command == "up":
        _exit(asyncio.run(_up(args)))
    elif args.command == "demo":
        _exit(asyncio.run(_demo(args)))
    elif args.command == "chat":
        from agentstream.devstack.chat_client import chat

        _exit(asyncio.run(chat(args.prompt, args.gateway, org=args.org, api_key=args.api_key)))
    elif args.command in OPS_COMMANDS:
        from agentstream.ops.command import run as run_ops

        _exit(run_ops(args))
    elif args.command == "loadtest":
        from agentstream.devstack.loadtest.command import run as run_loadtest

        _exit(run_loadtest(args))
    elif args.command == "gateway":
        from gateway.settings import GatewaySettings

        # Settings first: a refusal comes before the heavy imports.
        gateway_settings = _configured("gateway", GatewaySettings.from_env)
        _configured("gateway", lambda: configure_tracing("agentstream-gateway"))
        from agentstream.runtime.serve import serve
        from gateway.app import create_app

        serve(create_app(gateway_settings), host=args.host, port=args.port)
    elif args.command == "agent":
        from agent.settings import AgentSettings

        agent_settings = _configured("agent", AgentSettings.from_env)
        _configured("agent", lambda: configure_tracing("agentstream-agent"))
        from agent.app import create_app as create_agent_app
        from agentstream.runtime.serve import serve

        serve(create_agent_app(agent_settings), host=args.host, port=args.port)
    elif args.command == "worker":
        import msgspec

        from worker.main import main as worker_main
        from worker.settings import WorkerSettings

        settings = _configured("worker", WorkerSettings.from_env)
        _configured("worker", lambda: configure_tracing("agentstream-worker"))
        if args.org:
            settings = msgspec.structs.replace(settings, orgs=args.org)
        worker_main(settings)
        shutdown_tracing()
        _exit(0)
