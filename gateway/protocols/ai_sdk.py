"""A run as the Vercel AI SDK's UI message stream (protocol ``v1``, AI SDK 5 and later).

One run is one assistant message whose ID is the run ID, so a replay of the run (the AI SDK
resumes by replaying the whole message) replaces the message it already shows instead of adding
one. The parts, in the order ``useChat`` assembles them:

- ``start`` (``messageId`` = run, ``messageMetadata.run``), then ``start-step``;
- ``status`` → ``data-status`` with the fixed ID ``status``: one part, updated in place;
- ``token`` → ``text-start`` / ``text-delta``; a text part is closed (``text-end``) before a tool
  call, so text after the call follows it in the message;
- ``tool_start`` → ``tool-input-start`` and ``tool-input-available`` (``dynamic``: the client
  does not declare the agent's tools); ``tool_end`` → ``tool-output-available`` (JSON output
  parsed) or ``tool-output-error``; a ``run_sql`` result also as ``data-sql`` (query, columns,
  rows), keyed by the call ID;
- ``error`` (not fatal) → ``data-error``: an ``error`` part would end ``useChat``'s request;
- ``reset`` (attempt N restarted: everything the agent sent before is void) → open text closed,
  unanswered tool calls ended with ``tool-output-error``, ``finish-step``, a ``data-reset``
  part ``{attempt, reason}``, ``start-step``. Parts are append-only in the protocol, so a client
  shows what follows the last ``data-reset`` (one step per attempt);
- ``done`` → ``data-result`` (the ``AgentResult``), ``finish-step``, ``finish`` (``stop``); the
  final answer is sent as text only when the attempt streamed none (a run whose events expired);
- ``failed`` → ``error`` (``errorText`` = the reason), ``finish`` (``error``);
- ``cancelled`` → ``abort`` (``reason``), ``finish`` (``other``);
- every terminal's ``finish`` carries ``messageMetadata {run, outcome, attempt}``, and the
  stream ends with ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.protocols import Part, Translator, json_or_text, text_of
from schemas import ID_PATTERN, events

# The response header that names the protocol and its version.
HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"x-vercel-ai-ui-message-stream", b"v1"),)
# The stream's last event, after the terminal event's parts.
DONE = b"data: [DONE]\n\n"

_SQL_TOOL = "run_sql"


class UiMessageStream(Translator):
    """The parts of one run's assistant message, translated event by event from its first."""

    def __init__(self, run: str) -> None:
        self._run = run
        self._attempt = 1
        # The open text part's ID, if one is open, and how many parts have had an ID so far.
        self._text: str | None = None
        self._counter = 0
        # Tool calls of the current attempt still waiting for their output, by call ID.
        self._calls: dict[str, events.ToolStart] = {}
        # Whether the current attempt sent any text.
        self._texted = False

    def start(self) -> list[Part]:
        """The parts that open the message, before any event."""
        return [
            {"type": "start", "messageId": self._run, "messageMetadata": {"run": self._run}},
            {"type": "start-step"},
        ]

    def token(self, event: events.Token) -> list[Part]:
        """A text delta, opening a text part if none is open."""
        return self._token(event.text)

    def status(self, event: events.Status) -> list[Part]:
        """The one status data part, updated in place."""
        return [{"type": "data-status", "id": "status", "data": _status(event)}]

    def error(self, event: events.Error) -> list[Part]:
        """A ``data-error`` part."""
        data = {"message": event.message, "attempt": event.attempt}
        return [{"type": "data-error", "id": self._next_id("error"), "data": data}]

    def failed(self, event: events.Failed) -> list[Part]:
        """An ``error`` part, then the finish."""
        parts = self._close_all("the run failed")
        parts.append({"type": "error", "errorText": event.reason or "the run failed"})
        return [*parts, *self._finish("error", "failed", event.attempt)]

    def cancelled(self, event: events.Cancelled) -> list[Part]:
        """An ``abort`` part, then the finish."""
        parts = self._close_all("the run was cancelled")
        parts.append({"type": "abort", "reason": event.reason or "cancelled"})
        return [*parts, *self._finish("other", "cancelled", event.attempt)]

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}-{self._counter}"

    def _token(self, text: str) -> list[Part]:
        if not text:
            return []
        parts: list[Part] = []
        if self._text is None:
            self._text = self._next_id("text")
            parts.append({"type": "text-start", "id": self._text})
        self._texted = True
        parts.append({"type": "text-delta", "id": self._text, "delta": text})
        return parts

    def _close_text(self) -> list[Part]:
        if self._text is None:
            return []
        part: Part = {"type": "text-end", "id": self._text}
        self._text = None
        return [part]

    def _close_all(self, why: str) -> list[Part]:
        """End the open text part and every tool call left without its output."""
        parts = self._close_text()
        for call_id in self._calls:
            parts.append({"type": "tool-output-error", "toolCallId": call_id, "errorText": why})
        self._calls.clear()
        return parts

    def tool_start(self, event: events.ToolStart) -> list[Part]:
        """A dynamic tool part, its input available at once."""
        self._calls[event.call_id] = event
        call = {"toolCallId": event.call_id, "toolName": event.name, "dynamic": True}
        return [
            *self._close_text(),
            {"type": "tool-input-start", **call},
            {"type": "tool-input-available", **call, "input": event.input},
        ]

    def tool_end(self, event: events.ToolEnd) -> list[Part]:
        """The tool part's output (or its error)."""
        started = self._calls.pop(event.call_id, None)
        if started is None:
            # Not started in this attempt: the protocol would have no part to give it to.
            return []
        if event.error is not None:
            error = {"toolCallId": event.call_id, "errorText": event.error}
            return [{"type": "tool-output-error", **error}]
        output = json_or_text(event.output)
        parts: list[Part] = [
            {"type": "tool-output-available", "toolCallId": event.call_id, "output": output}
        ]
        if event.name == _SQL_TOOL and isinstance(output, dict) and "rows" in output:
            sql = {"query": started.input.get("query", ""), **output}
            parts.append({"type": "data-sql", "id": event.call_id, "data": sql})
        return parts

    def reset(self, event: events.Reset) -> list[Part]:
        """The void attempt's open parts closed, then a ``data-reset`` part between steps."""
        parts = self._close_all(f"void: attempt {event.attempt} restarted the run")
        self._attempt = event.attempt
        self._texted = False
        data = {"attempt": event.attempt, "reason": event.reason}
        return [
            *parts,
            {"type": "finish-step"},
            {"type": "data-reset", "id": f"reset-{event.attempt}", "data": data},
            {"type": "start-step"},
        ]

    def done(self, event: events.Done) -> list[Part]:
        """The result as a data part, then the finish."""
        parts = self._close_all("the run finished without this call's output")
        answer = event.result.final_answer
        if not self._texted and answer:
            parts += [*self._token(answer), *self._close_text()]
        result: Any = msgspec.to_builtins(event.result)
        parts.append({"type": "data-result", "id": "result", "data": result})
        return [*parts, *self._finish("stop", "done", event.attempt)]

    def _finish(self, reason: str, outcome: str, attempt: int) -> list[Part]:
        metadata = {"run": self._run, "outcome": outcome, "attempt": max(attempt, self._attempt)}
        finish = {"type": "finish", "finishReason": reason, "messageMetadata": metadata}
        return [{"type": "finish-step"}, finish]


def _status(event: events.Status) -> dict[str, Any]:
    """A status event's fields a page shows: its stage, detail and whatever else it names."""
    data: dict[str, Any] = {"stage": event.stage.value, "attempt": event.attempt}
    for name in ("detail", "sandbox_id", "sandbox_url", "model"):
        value = getattr(event, name)
        if value:
            data[name] = value
    return data


class UiMessage(msgspec.Struct, kw_only=True, frozen=True):
    """A message as ``useChat`` sends it; only what a prompt needs is read."""

    role: str
    id: str = ""
    parts: list[dict[str, Any]] = msgspec.field(default_factory=list)


class UiChatRequest(msgspec.Struct, kw_only=True, frozen=True):
    """What the AI SDK's ``DefaultChatTransport`` posts (extra ``body`` fields: ``org``,
    ``connection_id``); the chat's ID is the run's conversation."""

    id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    messages: list[UiMessage]
    org: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None
    connection_id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None


def prompt_of(messages: list[UiMessage]) -> str:
    """The text of the last user message: the new turn (agentstream keeps the history itself).

    Raises ``ValueError`` when there is no user message with text.
    """
    for message in reversed(messages):
        if message.role == "user":
            text = text_of(message.parts)
            if text:
                return text
            break
    raise ValueError("the last user message has no text part")
