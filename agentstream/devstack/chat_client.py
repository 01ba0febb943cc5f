"""``agentstream chat``: post a message and print its run as it streams."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TextIO

import httpx

from agentstream.devstack.sse_client import SseMessage, follow_run
from schemas import CompletenessTally

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 2


def _short(value: object, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunPrinter:
    """Renders events for a terminal: tokens inline, everything else as its own line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            self._out.write("\n")
            self._mid_line = False
        self._out.write(text + "\n")
        self._out.flush()

    def note(self, text: str) -> None:
        """Print a line of the client's own, not an event."""
        self._line(text)

    def show(self, message: SseMessage) -> None:
        """Print one event."""
        event = message.json()
        match message.event:
            case "token":
                self._out.write(event["text"])
                self._out.flush()
                self._mid_line = not event["text"].endswith("\n")
            case "status":
                extra = f" ({event['model']})" if event.get("model") else ""
                sandbox = f" sandbox={event['sandbox_id']}" if event.get("sandbox_id") else ""
                self._line(f"· {event['stage']}{extra}{sandbox}")
            case "tool_start":
                self._line(f"→ {event['name']} {_short(event.get('input', {}))}")
            case "tool_end":
                outcome = f"error: {event['error']}" if event.get("error") else event["output"]
                self._line(f"← {event['name']}: {_short(outcome)}")
            case "reset":
                self._line(f"↺ attempt {event['attempt']} restarted: earlier output is void")
            case "error":
                self._line(f"! {event['message']}")
            case "done":
                self._line("")
                self._line("Final answer:")
                self._line(event["result"]["final_answer"])
            case "failed":
                self._line(f"✗ run failed: {event['reason']}")
            case "cancelled":
                self._line(f"✗ run cancelled: {event.get('reason', '')}")


def check_completeness(terminal: SseMessage, tally: CompletenessTally, printer: RunPrinter) -> bool:
    """Whether every event the terminal event counts was received, each once; says so."""
    claimed = terminal.json().get("completeness")
    if claimed is None:
        printer.note("(no completeness proof: the run's events had expired)")
        return True
    received = tally.proof()
    if (received.events, received.sha256) != (claimed["events"], claimed["sha256"]):
        printer.note(
            f"✗ incomplete stream: received {received.events} events, "
            f"the run had {claimed['events']} (or they differ)"
        )
        return False
    printer.note(f"✓ all {received.events} events received (sha256 {received.sha256[:12]}…)")
    return True


async def chat(
    prompt: str,
    gateway: str,
    *,
    org: str | None = None,
    api_key: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Start a run with ``prompt`` and print it live; the exit code tells how it ended."""
    body: dict[str, str] = {"message": prompt}
    if org:
        body["org"] = org
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(10.0, read=60.0)
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
        response = await client.post(f"{gateway.rstrip('/')}/api/messages", json=body)
        if response.status_code != 202:
            out.write(f"gateway refused the message: {response.status_code} {response.text}\n")
            return EXIT_FAILED
        accepted = response.json()
        out.write(f"run {accepted['workflow_id']}\n")
        printer = RunPrinter(out)
        tally = CompletenessTally()
        # The URL carries the run's stream token; it is relative when no PUBLIC_URL is set.
        stream_url = str(httpx.URL(gateway).join(accepted["stream_url"]))
        # Closed on return, before the client: the stream's connection must not be left to
        # the event loop's shutdown, which would race the generators that hold it.
        async with contextlib.aclosing(follow_run(client, stream_url)) as messages:
            async for message in messages:
                printer.show(message)
                if not message.terminal:
                    if message.id is not None:
                        tally.add(int(message.id), message.data.encode())
                    continue
                if not check_completeness(message, tally, printer):
                    return EXIT_FAILED
                if message.event == "done":
                    return EXIT_DONE
                if message.event == "cancelled":
                    return EXIT_CANCELLED
                if message.event == "failed":
                    return EXIT_FAILED
    return EXIT_FAILED
