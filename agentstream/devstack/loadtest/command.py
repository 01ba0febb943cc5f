"""``agentstream loadtest``: options, the stack it may bring up, and the exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from agentstream.devstack.loadtest.http1 import HttpError, Origin, request
from agentstream.devstack.loadtest.load import Kill, LoadConfig, LoadResult, run_load
from agentstream.devstack.loadtest.options import check, settings_of, stack_env
from agentstream.devstack.loadtest.report import (
    Report,
    print_summary,
    read_report,
    summarize,
    write_report,
)
from agentstream.devstack.loadtest.runs import RunPlan
from agentstream.devstack.loadtest.usage import MetricsUsage, ProcessUsage, Usage

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


async def _reachable(gateways: list[Origin]) -> str | None:
    for origin in gateways:
        try:
            async with request(origin, "GET", "/healthz", timeout_s=10.0) as response:
                await response.read(10.0)
        except HttpError as exc:
            return f"gateway {origin.host_header} unreachable: {exc}"
        if response.status != 200:
            return f"gateway {origin.host_header} /healthz answered {response.status}"
    return None


@contextlib.asynccontextmanager
async def _target(args: argparse.Namespace) -> AsyncIterator[tuple[list[str], Usage, Kill | None]]:
    """Gateway URLs, how to sample their usage, and how to kill one (only a stack of our own)."""
    if not args.stack:
        origins = [Origin.parse(url) for url in args.gateway]
        yield args.gateway, MetricsUsage(origins), None
        return
    from agentstream.devstack.stack import LocalStack, StackConfig

    state = Path(tempfile.mkdtemp(prefix="agentstream-loadtest-"))
    stack = LocalStack(
        StackConfig(
            state_dir=state,
            replicas=args.replicas,
            fixed_ports=False,
            temporal_ui=False,
            service_env=stack_env(args.stack_env),
        )
    )

    def stack_pids() -> dict[str, int]:
        return {
            name: process.pid
            for name, process in stack.processes.items()
            if process.running and process.pid is not None
        }

    async def kill() -> str:
        name = f"gateway-{args.kill_replica}"
        await stack.processes[name].kill()
        return name

    try:
        async with stack.running():
            print(f"local stack up: gateways {' '.join(stack.gateway_urls)}", flush=True)
            yield stack.gateway_urls, ProcessUsage(stack_pids), kill
    finally:
        await asyncio.to_thread(shutil.rmtree, state, ignore_errors=True)


async def loadtest(args: argparse.Namespace) -> int:
    """Run the load test the options describe; the exit code says whether it passed."""
    problem = check(args)
    if problem:
        print(f"agentstream loadtest: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.merge:
        reports = [read_report(path) for path in args.merge]
        results = [result for report in reports for result in report.results]
        summary = summarize(results, kill_requested=any(r.summary.kill_requested for r in reports))
        print_summary(summary, sys.stdout)
        return EXIT_PASSED if summary.passed else EXIT_FAILED
    kill_requested = args.kill_replica_after is not None or args.kill_at_fraction is not None
    async with _target(args) as (urls, usage, kill):
        origins = [Origin.parse(url) for url in urls]
        unreachable = await _reachable(origins)
        if unreachable:
            print(f"agentstream loadtest: {unreachable}", file=sys.stderr)
            return EXIT_USAGE
        plan = RunPlan(
            gateways=origins,
            readers=args.readers,
            resume_fraction=args.resume_fraction,
            drop_within=args.drop_within,
            deadline_s=args.deadline,
            message=args.message,
            org=args.org,
            api_key=args.api_key or None,
            idle_timeout_s=args.idle_timeout,
            post_timeout_s=args.post_timeout,
        )
        config = LoadConfig(
            runs=args.runs,
            rate=args.rate,
            seed=args.seed,
            kill_after_s=args.kill_replica_after,
            kill_at_fraction=args.kill_at_fraction,
        )
        print(
            f"{args.runs} runs, {args.readers} readers each, over {len(origins)} replica(s)…",
            flush=True,
        )
        result: LoadResult = await run_load(plan, config, usage, kill)
    summary = summarize([result], kill_requested=kill_requested)
    print_summary(summary, sys.stdout)
    if args.json:
        write_report(
            args.json, Report(summary=summary, settings=settings_of(args), results=[result])
        )
    return EXIT_PASSED if summary.passed else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Entry point for the CLI."""
    return asyncio.run(loadtest(args))
