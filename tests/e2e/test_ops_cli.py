"""``agentstream tail``, ``runs`` and ``inspect`` as a user runs them against a deployment.

``tail`` must print exactly what a fresh SSE client of the run receives (same event IDs and
types, in order), on a finished run and on one it follows live to its end.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys

import httpx
from nats.aio.client import Client as NATS

from agentstream.devstack.processes import free_port
from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from agentstream.ops.connections import OpsSettings
from agentstream.ops.run_inspect import Inspection, inspect_run
from agentstream.ops.run_list import recent_runs
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.settings import NatsSettings, TemporalSettings
from agentstream.runtime.temporal import connect_temporal
from schemas import TERMINAL_EVENT_TYPES, message_seq
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete, read_whole_run, start_run

SLOW_ORG = "opsslow"
_LINE = re.compile(r"^(\d+)  (\d+)\.(\d+)  (\w+)\s+a(\d+)  (\S+)")


def _env(stack: LocalStack) -> dict[str, str]:
    """The environment pointing the commands at the stack, as an operator would set it."""
    return {
        **os.environ,
        "NATS_URL": stack.nats_url,
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "DATABASE_URL": stack.database_url,
    }


async def _start(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    async with asyncio.timeout(RUN_TIMEOUT_S):
        out, err = await process.communicate()
    stderr = err.decode()
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    return await process.wait(), out.decode(), stderr


async def _agentstream(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``agentstream *args``: exit code, stdout, stderr (never a traceback)."""
    return await _finish(await _start(env, *args))


def _tailed(output: str) -> list[tuple[int, str]]:
    """The (event ID, type) of every line ``tail`` printed; each line is well formed."""
    events = []
    for line in output.splitlines():
        match = _LINE.match(line)
        assert match, f"not a tail line: {line!r}"
        event_id, seq, position, type_ = match[1], match[2], match[3], match[4]
        assert int(event_id) == int(seq) * 1000 + int(position)
        events.append((int(event_id), type_))
    return events


def _received(messages: list[SseMessage]) -> list[tuple[int, str]]:
    return [(int(m.id or 0), m.event) for m in messages]


async def _heartbeating(run: str, settings: OpsSettings) -> Inspection:
    """``inspect``'s view of the run once its agent call has heartbeated streamed tokens."""
    async with asyncio.timeout(60):
        while True:
            found = await inspect_run(run, settings)
            assert not found.problems, found.problems
            # The workflow start follows the 202: a first look may come before it.
            pending = found.workflow.pending if found.workflow else []
            if any(a.name == "call_agent" and (a.details or {}).get("tokens") for a in pending):
                return found
            # Heartbeats come every couple of seconds, and Temporal has no event to wait on.
            await asyncio.sleep(0.5)


async def test_tail_of_a_finished_run_prints_what_an_sse_client_receives(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "Count my words please")
    messages = await read_whole_run(http, gateway, run)
    assert_complete(messages)
    env = _env(stack)

    code, output, _ = await _agentstream(env, "tail", run)
    assert code == 0, output
    assert _tailed(output) == _received(messages)

    # From a stream sequence: the events of that message and every later one.
    third = message_seq(int(messages[2].id or 0))
    code, output, _ = await _agentstream(env, "tail", run, "--from", str(third))
    assert code == 0
    later = [m for m in messages if message_seq(int(m.id or 0)) >= third]
    assert _tailed(output) == _received(later) and len(later) < len(messages)


async def test_tail_follows_a_live_run_to_its_end_and_inspect_sees_its_heartbeat(
    stack: LocalStack, http: httpx.AsyncClient, nc: NATS
) -> None:
    env = _env(stack)
    settings = OpsSettings(
        nats=NatsSettings(url=stack.nats_url),
        temporal=TemporalSettings(address=stack.temporal_address),
        database_url=stack.database_url,
    )
    # A slow agent of its own: the run lasts several seconds and several heartbeats.
    async with stack.dedicated_agent(SLOW_ORG, env={"SCRIPTED_TOKEN_DELAY_S": "0.1"}):
        gateway = stack.gateway_urls[1]
        run = await start_run(http, gateway, "Count my words please", org=SLOW_ORG)
        tail = await _start(env, "tail", run)
        assert tail.stdout is not None
        async with asyncio.timeout(30):
            first = await tail.stdout.readline()
        assert _LINE.match(first.decode()), first
        last = await HistoryReader(nc).last_event(SLOW_ORG, run)
        assert last is not None and last.type not in TERMINAL_EVENT_TYPES, "still running"

        # Meanwhile the workflow heartbeats its progress.
        found = await _heartbeating(run, settings)
        assert found.workflow is not None and found.workflow.status == "running"
        (activity,) = [a for a in found.workflow.pending if a.name == "call_agent"]
        assert activity.last_heartbeat is not None
        assert activity.details["stage"] == "agent_started"
        assert found.stream is not None and found.stream.events >= 1

        code, rest, _ = await _finish(tail)
        # The terminal event is stored just before the workflow closes, on the org's worker
        # (gone with this block): wait for the close.
        temporal = await connect_temporal(TemporalSettings(address=stack.temporal_address))
        async with asyncio.timeout(30):
            await temporal.get_workflow_handle(run).result()
    assert code == 0
    tailed = _tailed(first.decode() + rest)
    assert tailed[-1][1] == "done"
    messages = await read_whole_run(http, gateway, run)
    assert tailed == _received(messages)

    code, output, _ = await _agentstream(env, "inspect", run)
    assert code == 0, output
    terminal_seq = message_seq(int(messages[-1].id or 0))
    assert re.search(r"status\s+completed", output), output
    assert re.search(rf"org\s+{SLOW_ORG} \(task queue agent-{SLOW_ORG}\)", output), output
    assert re.search(rf"events\s+{len(messages)} stored", output), output
    assert re.search(rf"last\s+sequence {terminal_seq}: done \(attempt 1\)", output), output
    assert "stored         in PostgreSQL" in output and "words: 4" in output, output

    # Temporal's list catches up with the close a moment later.
    async with asyncio.timeout(30):
        while True:
            listed = await recent_runs(temporal, org=SLOW_ORG)
            if any(r.run == run and r.status == "completed" for r in listed):
                break
            await asyncio.sleep(0.2)
    code, output, _ = await _agentstream(env, "runs", "--org", SLOW_ORG, "--limit", "5")
    assert code == 0
    assert re.search(rf"^{run}\s+{SLOW_ORG}\s+completed\s", output, re.MULTILINE), output


async def test_a_run_nobody_knows_and_bad_input_are_clear_errors(stack: LocalStack) -> None:
    env = _env(stack)
    code, _, stderr = await _agentstream(env, "tail", "run_nobody_knows")
    assert code == 1 and "the stream holds no event of run_nobody_knows" in stderr
    code, _, stderr = await _agentstream(env, "inspect", "run_nobody_knows")
    assert code == 1 and "no service knows run run_nobody_knows" in stderr
    code, _, stderr = await _agentstream(env, "tail", "runs.>")
    assert code == 2 and "invalid run ID 'runs.>'" in stderr


async def test_unreachable_services_are_named_without_a_traceback() -> None:
    nowhere = free_port()
    env = {
        **os.environ,
        "NATS_URL": f"nats://127.0.0.1:{nowhere}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{nowhere}",
        "DATABASE_URL": f"postgresql://nobody:secret@127.0.0.1:{nowhere}/db",
    }
    code, _, stderr = await _agentstream(env, "tail", "run_x")
    assert code == 1 and f"cannot reach NATS at nats://127.0.0.1:{nowhere}" in stderr
    code, _, stderr = await _agentstream(env, "runs")
    assert code == 1 and f"cannot reach Temporal at 127.0.0.1:{nowhere}" in stderr
    code, output, _ = await _agentstream(env, "inspect", "run_x")
    assert code == 1
    for service in ("NATS", "Temporal", "PostgreSQL"):
        assert f"cannot reach {service} at" in output, output
    assert "secret" not in output
