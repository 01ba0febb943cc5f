"""Drive one agentstream run from Temporal directly and watch it stream through a gateway.

What it demonstrates: a run does not have to be started through the gateway's
``POST /api/messages``. Any Temporal client can start ``ChatWorkflow`` on the org's task queue
(``agent-<org>``) with a plain JSON input; when ``callback_url`` names a gateway, the agent posts
its chunks there, and that gateway (or any replica) streams the run over SSE to whoever asks for
``GET /api/stream/<workflow_id>``. Temporal carries only the input and the final result.

The script:

1. connects to Temporal (plain ``temporalio`` client, default data converter: the input is a
   dict) and starts ``ChatWorkflow`` with ``{"prompt", "org", "callback_url"}`` under a fresh
   workflow ID ``run_e2e_<hex>``;
2. follows ``<gateway>/api/stream/<workflow_id>`` (reconnecting with ``Last-Event-ID`` if the
   connection drops) and prints every event as it arrives, tokens inline;
3. awaits the workflow's result and checks that it completed, that the stream ended with
   ``done``, that ``final_answer`` is not empty and that the agent ran SQL (``sql_queries`` not
   empty); prints ``PASS``/``FAIL`` per check and exits 0 only if every check passed. A run
   that has no result within ``--timeout`` (120 s) is terminated, so nothing is left waiting.

Run it against the local stack (no LLM needed: the offline scripted model answers the default
koperasi question with real SQL)::

    .venv/bin/agentstream up                 # in another terminal
    .venv/bin/python examples/temporal_e2e.py
    .venv/bin/python examples/temporal_e2e.py --org default --prompt "..."

``--temporal`` (default ``$TEMPORAL_ADDRESS`` or ``127.0.0.1:7233``) and ``--gateway`` (default
``$AGENTSTREAM_GATEWAY`` or ``http://127.0.0.1:8000``) follow the addresses ``up`` printed. Every
run gets a new workflow ID, so the script can be run again and again. The stream is read
without credentials, as the local stack (no API keys configured) allows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import uuid
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from agentstream.devstack.sse_client import SseMessage, follow_run
from agentstream.runtime.settings import (
    DEFAULT_GATEWAY_URL,
    DEFAULT_TEMPORAL_ADDRESS,
    DEFAULT_TEMPORAL_NAMESPACE,
)
from agentstream.runtime.temporal import WORKFLOW_NAME, task_queue

SAMPLE_PROMPT = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
OVERALL_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Start ChatWorkflow through Temporal directly and stream it from a gateway."
    )
    parser.add_argument(
        "--temporal",
        default=os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_TEMPORAL_ADDRESS,
        help=f"Temporal frontend (default: $TEMPORAL_ADDRESS or {DEFAULT_TEMPORAL_ADDRESS})",
    )
    parser.add_argument(
        "--namespace", default=DEFAULT_TEMPORAL_NAMESPACE, help="Temporal namespace"
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("AGENTSTREAM_GATEWAY") or DEFAULT_GATEWAY_URL,
        help=f"gateway base URL (default: $AGENTSTREAM_GATEWAY or {DEFAULT_GATEWAY_URL})",
    )
    parser.add_argument("--org", default="default", help="org: the task queue is agent-<org>")
    parser.add_argument("--prompt", default=SAMPLE_PROMPT, help="the question for the agent")
    parser.add_argument(
        "--timeout", type=float, default=OVERALL_TIMEOUT_S, help="overall time limit, seconds"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AGENTSTREAM_API_KEY") or None,
        help="API key of the org, when the gateway requires one (default: $AGENTSTREAM_API_KEY)",
    )
    return parser.parse_args(argv)


def _short(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EventPrinter:
    """One line per event; token text is printed inline, as the answer grows."""

    def __init__(self) -> None:
        self._in_tokens = False
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            print()
        self._in_tokens = self._mid_line = False
        print(text, flush=True)

    def show(self, message: SseMessage) -> None:
        """Print one SSE event."""
        event: dict[str, Any] = message.json()
        prefix = f"[{message.id or '-':>4}] {message.event:<10}"
        match message.event:
            case "token":
                if not self._in_tokens:
                    print(f"{prefix} ", end="")
                    self._in_tokens = True
                text = str(event.get("text", ""))
                print(text, end="", flush=True)
                self._mid_line = bool(text) and not text.endswith("\n")
            case "status":
                details = [
                    f"{key}={event[key]}"
                    for key in ("model", "sandbox_id")
                    if event.get(key) is not None
                ]
                self._line(f"{prefix} {event.get('stage')} {' '.join(details)}".rstrip())
            case "tool_start":
                self._line(f"{prefix} {event.get('name')} {_short(event.get('input', {}))}")
            case "tool_end":
                outcome = f"error: {event['error']}" if event.get("error") else event.get("output")
                self._line(f"{prefix} {event.get('name')}: {_short(outcome)}")
            case "reset":
                self._line(f"{prefix} attempt {event.get('attempt')}: {event.get('reason', '')}")
            case "error":
                self._line(f"{prefix} {_short(event.get('message', event))}")
            case "done":
                result = event.get("result") or {}
                queries = len(result.get("sql_queries") or [])
                self._line(f"{prefix} model={result.get('model')} sql_queries={queries}")
            case "failed" | "cancelled":
                self._line(f"{prefix} {event.get('reason', '')}")
            case _:
                self._line(f"{prefix} {_short(event)}")


async def stream_events(
    gateway: str, workflow_id: str, api_key: str | None = None
) -> list[SseMessage]:
    """Print the run's events until its terminal one; return them."""
    url = f"{gateway.rstrip('/')}/api/stream/{workflow_id}"
    printer = EventPrinter()
    seen: list[SseMessage] = []
    # A gateway with API keys lets a caller of the run's org stream it without a stream token.
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(10.0, read=60.0)
    async with (
        httpx.AsyncClient(timeout=timeout, headers=headers) as client,
        contextlib.aclosing(follow_run(client, url)) as messages,
    ):
        async for message in messages:
            seen.append(message)
            printer.show(message)
    return seen


async def start_run(client: Client, args: argparse.Namespace) -> WorkflowHandle[Any, Any]:
    """Start ``ChatWorkflow`` on the org's task queue under a fresh workflow ID."""
    workflow_id = f"run_e2e_{uuid.uuid4().hex}"
    queue = task_queue(args.org)
    chat = {"prompt": args.prompt, "org": args.org, "callback_url": args.gateway}
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_NAME, chat, id=workflow_id, task_queue=queue
    )
    print(f"started {WORKFLOW_NAME} {workflow_id} on {queue} via {args.temporal}")
    print(f"streaming {args.gateway.rstrip('/')}/api/stream/{workflow_id}", flush=True)
    return handle


async def watch_and_check(
    handle: WorkflowHandle[Any, Any], gateway: str, api_key: str | None = None
) -> bool:
    """Stream the run while awaiting its result, then check both; True if every check passed."""
    stream = asyncio.create_task(stream_events(gateway, handle.id, api_key))
    checks: list[tuple[str, bool, str]] = []
    result: Any = None
    try:
        try:
            result = await handle.result()
            checks.append(("workflow completed", True, "Temporal returned its result"))
        except Exception as exc:
            checks.append(("workflow completed", False, f"{type(exc).__name__}: {exc}"))
        try:
            events = await stream
            last = events[-1].event if events else "nothing"
            detail = f"{len(events)} events, the last one {last}"
            checks.append(("stream ended with done", last == "done", detail))
        except Exception as exc:
            checks.append(("stream ended with done", False, f"{type(exc).__name__}: {exc}"))
    finally:
        stream.cancel()

    result = result if isinstance(result, dict) else {}
    answer = str(result.get("final_answer") or "")
    queries = list(result.get("sql_queries") or [])
    checks.append(("final_answer non-empty", bool(answer.strip()), f"{len(answer)} characters"))
    checks.append(("sql_queries non-empty", bool(queries), f"{len(queries)} queries"))

    if answer:
        print("\nFinal answer:\n" + answer)
    for query in queries:
        rows, ms = query.get("row_count"), query.get("duration_ms")
        print(f"SQL ({rows} rows, {ms} ms): {query.get('sql')}")
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name} ({detail})")
    passed = all(ok for _, ok, _ in checks)
    print(f"{'PASS' if passed else 'FAIL'}: all checks for {handle.id}", flush=True)
    return passed


async def main_async(args: argparse.Namespace) -> int:
    """The whole check under one time limit; a run that overstays it is terminated."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    handle: WorkflowHandle[Any, Any] | None = None
    try:
        async with asyncio.timeout_at(deadline):
            client = await Client.connect(args.temporal, namespace=args.namespace)
            handle = await start_run(client, args)
            return 0 if await watch_and_check(handle, args.gateway, args.api_key) else 1
    except TimeoutError:
        print(f"FAIL: no result within {args.timeout:g} s", flush=True)
    except Exception as exc:
        print(f"FAIL: {type(exc).__name__}: {exc}", flush=True)
    if handle is not None:
        # Leave nothing running behind: a run with no worker on its queue would wait forever.
        try:
            async with asyncio.timeout(10):
                await handle.terminate(reason="examples/temporal_e2e.py gave up on it")
            print(f"terminated {handle.id}", flush=True)
        except Exception as exc:
            print(f"could not terminate {handle.id}: {type(exc).__name__}: {exc}", flush=True)
    return 1


def main() -> None:
    """Run, then leave without interpreter teardown (temporalio's runtime can crash there)."""
    code = asyncio.run(main_async(parse_args()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
