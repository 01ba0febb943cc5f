"""One line per stored event, for a terminal: where it is stored, what it is, and a summary.

``<event id>  <seq>.<position>  <type>  a<attempt>  <producer time, UTC>  <summary>``: the event
ID first, as SSE's ``id:`` and ``Last-Event-ID`` carry it, so a line can be matched with what a
client received.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from agentstream.runtime.nats_contract import StoredEvent

_SUMMARY_CHARS = 80


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def _summary(type_: str, event: dict[str, Any]) -> str:
    """What the event says, in a few words."""
    match type_:
        case "status":
            return str(event.get("stage", ""))
        case "token":
            return _short(event.get("text", ""))
        case "tool_start":
            return f"{event.get('name', '')} {_short(event.get('input', {}))}"
        case "tool_end":
            error = event.get("error")
            outcome = f"error: {error}" if error else event.get("output", "")
            return f"{event.get('name', '')}: {_short(outcome)}"
        case "error":
            return _short(event.get("message", ""))
        case "done":
            return _short((event.get("result") or {}).get("final_answer", ""))
        case "failed" | "cancelled" | "reset":
            return _short(event.get("reason", ""))
    return ""


def _time(ts_ns: object) -> str:
    if not isinstance(ts_ns, int) or ts_ns <= 0:
        return "-"
    moment = datetime.fromtimestamp(ts_ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_line(stored: StoredEvent) -> str:
    """The event as one line of ``agentstream tail``."""
    try:
        event = json.loads(stored.data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        return f"{stored.id}  {stored.seq}.{stored.position}  {stored.type}  (unreadable data)"
    return "  ".join(
        (
            str(stored.id),
            f"{stored.seq}.{stored.position}",
            f"{stored.type:<10}",
            f"a{event.get('attempt', '?')}",
            _time(event.get("ts")),
            _summary(stored.type, event),
        )
    ).rstrip()
