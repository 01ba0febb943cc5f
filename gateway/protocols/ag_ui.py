"""A run as AG-UI events (``@ag-ui/core`` 1.0), in an order its clients verify.

The thread is the run's conversation and the run is one AG-UI run: ``RUN_STARTED`` first, then

- ``status`` → the agent's state: ``STATE_SNAPSHOT {status}`` for the first, ``STATE_DELTA``
  (JSON Patch, ``replace /status``) for the others;
- ``token`` → ``TEXT_MESSAGE_START`` (role ``assistant``) and ``TEXT_MESSAGE_CONTENT``; the
  message is ended (``TEXT_MESSAGE_END``) before a tool call, and a new one opens after it;
- ``tool_start`` → ``TOOL_CALL_START`` (``parentMessageId``: the message before it), one
  ``TOOL_CALL_ARGS`` with the JSON input, ``TOOL_CALL_END`` (the arguments are complete);
  ``tool_end`` → ``TOOL_CALL_RESULT`` (the output, or ``error: …``);
- ``error`` (not fatal) → ``CUSTOM agentstream.error {message}``;
- ``reset`` (attempt N restarted; what the agent sent before is void) → the open message ended,
  ``CUSTOM agentstream.reset {attempt, reason, void}`` naming the void messages and tool
  calls, and, when the client sent its messages (``POST``), ``MESSAGES_SNAPSHOT`` with them,
  which drops the void ones from the client's list;
- ``done`` → ``RUN_FINISHED`` (``outcome: success``, ``result``: the ``AgentResult``); the final
  answer is sent as a message only when the attempt streamed no text;
- ``failed`` → ``RUN_ERROR`` (``code: failed``); ``cancelled`` → ``RUN_FINISHED`` with
  ``outcome: cancelled``.

Message and tool call IDs are prefixed with the run ID and attempt: a thread holds many runs,
and a retried attempt may repeat its model's call IDs.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.protocols import Part, Translator, text_of
from schemas import ID_PATTERN, events

_encoder = msgspec.json.Encoder()


class AgUiStream(Translator):
    """The AG-UI events of one run, translated event by event from its first.

    ``input_messages``: the messages the client sent with its ``RunAgentInput``, restored by a
    ``MESSAGES_SNAPSHOT`` when an attempt restarts; None when it sent none (a ``GET``).
    """

    def __init__(
        self,
        thread_id: str,
        run_id: str,
        run: str,
        *,
        input_messages: list[Any] | None = None,
    ) -> None:
        self._thread_id = thread_id
        self._run_id = run_id
        self._run = run
        self._input_messages = input_messages
        self._attempt = 1
        self._counter = 0
        # The open text message, the last message of this attempt, and this attempt's messages
        # and tool calls (void if it restarts).
        self._text: str | None = None
        self._last_message: str | None = None
        self._sent: list[str] = []
        self._calls: list[str] = []
        self._open_calls: set[str] = set()
        self._texted = False
        self._status_sent = False

    def start(self) -> list[Part]:
        """The events that open the run, before any of its events."""
        return [
            {
                "type": "RUN_STARTED",
                "threadId": self._thread_id,
                "runId": self._run_id,
                "metadata": {"agentstream_run": self._run},
            }
        ]

    def token(self, event: events.Token) -> list[Part]:
        """Text content, starting a text message if none is open."""
        return self._token(event, event.text)

    def status(self, event: events.Status) -> list[Part]:
        """The status as the agent's state: a snapshot first, then deltas."""
        return [self._status(event)]

    def error(self, event: events.Error) -> list[Part]:
        """A ``CUSTOM agentstream.error`` event."""
        value = {"message": event.message, "attempt": event.attempt}
        return [self._event(event, "CUSTOM", name="agentstream.error", value=value)]

    def done(self, event: events.Done) -> list[Part]:
        """``RUN_FINISHED`` with the result (the answer as text, if no token carried it)."""
        parts = self._close_text(event)
        answer = event.result.final_answer
        if not self._texted and answer:
            parts += [*self._token(event, answer), *self._close_text(event)]
        finished = self._finished(event, {"type": "success"})
        finished["result"] = msgspec.to_builtins(event.result)
        return [*parts, finished]

    def failed(self, event: events.Failed) -> list[Part]:
        """``RUN_ERROR``."""
        error = self._event(event, "RUN_ERROR", message=event.reason or "failed", code="failed")
        return [*self._close_text(event), error]

    def cancelled(self, event: events.Cancelled) -> list[Part]:
        """``RUN_FINISHED`` with the outcome ``cancelled``."""
        return [*self._close_text(event), self._finished(event, {"type": "cancelled"})]

    def _event(self, source: events.BaseEvent, kind: str, **fields: Any) -> Part:
        # AG-UI's timestamp is in milliseconds; agentstream's producer time in nanoseconds.
        return {"type": kind, "timestamp": source.ts // 1_000_000, **fields}

    def _id(self, kind: str) -> str:
        self._counter += 1
        return f"{self._run}-{self._attempt}-{kind}-{self._counter}"

    def _status(self, event: events.Status) -> Part:
        status: dict[str, Any] = {"stage": event.stage.value, "attempt": event.attempt}
        for name in ("detail", "sandbox_id", "sandbox_url", "model"):
            value = getattr(event, name)
            if value:
                status[name] = value
        if not self._status_sent:
            self._status_sent = True
            return self._event(event, "STATE_SNAPSHOT", snapshot={"status": status})
        patch = [{"op": "replace", "path": "/status", "value": status}]
        return self._event(event, "STATE_DELTA", delta=patch)

    def _token(self, event: events.BaseEvent, text: str) -> list[Part]:
        if not text:
            return []
        parts: list[Part] = []
        if self._text is None:
            self._text = self._last_message = self._id("text")
            self._sent.append(self._text)
            parts.append(
                self._event(event, "TEXT_MESSAGE_START", messageId=self._text, role="assistant")
            )
        self._texted = True
        parts.append(self._event(event, "TEXT_MESSAGE_CONTENT", messageId=self._text, delta=text))
        return parts

    def _close_text(self, event: events.BaseEvent) -> list[Part]:
        if self._text is None:
            return []
        part = self._event(event, "TEXT_MESSAGE_END", messageId=self._text)
        self._text = None
        return [part]

    def _call_id(self, call_id: str) -> str:
        return f"{self._run}-{self._attempt}-{call_id}"

    def tool_start(self, event: events.ToolStart) -> list[Part]:
        """``TOOL_CALL_START``, ``TOOL_CALL_ARGS`` and ``TOOL_CALL_END``."""
        call = self._call_id(event.call_id)
        self._calls.append(call)
        self._open_calls.add(call)
        start = self._event(event, "TOOL_CALL_START", toolCallId=call, toolCallName=event.name)
        if self._last_message is not None:
            start["parentMessageId"] = self._last_message
        args = _encoder.encode(event.input).decode()
        return [
            *self._close_text(event),
            start,
            self._event(event, "TOOL_CALL_ARGS", toolCallId=call, delta=args),
            self._event(event, "TOOL_CALL_END", toolCallId=call),
        ]

    def tool_end(self, event: events.ToolEnd) -> list[Part]:
        """``TOOL_CALL_RESULT``."""
        call = self._call_id(event.call_id)
        if call not in self._open_calls:
            # Not started in this attempt: there is no call to give it to.
            return []
        self._open_calls.discard(call)
        result = self._id("result")
        self._sent.append(result)
        content = event.output if event.error is None else f"error: {event.error}"
        return [
            self._event(
                event,
                "TOOL_CALL_RESULT",
                messageId=result,
                toolCallId=call,
                content=content,
                role="tool",
            )
        ]

    def reset(self, event: events.Reset) -> list[Part]:
        """The open message ended, and the void messages and tool calls named."""
        parts = self._close_text(event)
        void = {"messages": self._sent, "tool_calls": self._calls}
        value = {"attempt": event.attempt, "reason": event.reason, "void": void}
        parts.append(self._event(event, "CUSTOM", name="agentstream.reset", value=value))
        if self._input_messages is not None:
            parts.append(self._event(event, "MESSAGES_SNAPSHOT", messages=self._input_messages))
        self._attempt = event.attempt
        self._sent, self._calls, self._open_calls, self._texted = [], [], set(), False
        self._last_message = None
        return parts

    def _finished(self, event: events.BaseEvent, outcome: dict[str, str]) -> Part:
        return self._event(
            event, "RUN_FINISHED", threadId=self._thread_id, runId=self._run_id, outcome=outcome
        )


class RunAgentInput(msgspec.Struct, kw_only=True, frozen=True):
    """What an AG-UI client posts to run an agent; the thread is the run's conversation.

    ``runId`` names the run as an ``Idempotency-Key`` does: a retried post with the same one
    gets the same run. ``forwardedProps.org`` may name the org (where credentials do not).
    """

    # AG-UI's own field names.
    threadId: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    runId: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    # Kept as sent: a retried attempt hands them back in a MESSAGES_SNAPSHOT.
    messages: list[dict[str, Any]]
    forwardedProps: dict[str, Any] = msgspec.field(default_factory=dict)


def prompt_of(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message: the new turn (agentstream keeps the history itself).

    Raises ``ValueError`` when there is no user message with text.
    """
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = text_of(content)
        else:
            text = ""
        if text:
            return text
        break
    raise ValueError("the last user message has no text")
