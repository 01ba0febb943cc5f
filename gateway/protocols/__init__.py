"""A run's stored events translated into the frontend protocols agentstream also speaks.

Each translator is a pure, per-connection object: it takes the run's events in order, from the
run's first, and returns the protocol's messages; it does no I/O. The routes that serve them are
in ``gateway.routes.ui_message_stream`` and ``gateway.routes.ag_ui_events``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

import msgspec

from schemas import events

_encoder = msgspec.json.Encoder()

# One protocol message: a JSON object.
Part = dict[str, Any]


class Translator(abc.ABC):
    """One connection's translation of one run, fed the run's events in order from its first.

    :meth:`translate` hands each event to the method for its type; a protocol says what each
    event becomes. An event type a protocol has no method for becomes nothing.
    """

    @abc.abstractmethod
    def start(self) -> list[Part]:
        """The messages that open the stream, before any event."""

    def translate(self, event: events.Event) -> list[Part]:
        """The messages that stand for ``event``."""
        match event:
            case events.Token():
                return self.token(event)
            case events.Status():
                return self.status(event)
            case events.ToolStart():
                return self.tool_start(event)
            case events.ToolEnd():
                return self.tool_end(event)
            case events.Reset():
                return self.reset(event)
            case events.Error():
                return self.error(event)
            case events.Done():
                return self.done(event)
            case events.Failed():
                return self.failed(event)
            case events.Cancelled():
                return self.cancelled(event)
        return []

    @abc.abstractmethod
    def token(self, event: events.Token) -> list[Part]:
        """A piece of the answer's text."""

    @abc.abstractmethod
    def status(self, event: events.Status) -> list[Part]:
        """A stage the run reached."""

    @abc.abstractmethod
    def tool_start(self, event: events.ToolStart) -> list[Part]:
        """A tool call begun, with its input."""

    @abc.abstractmethod
    def tool_end(self, event: events.ToolEnd) -> list[Part]:
        """A tool call's output."""

    @abc.abstractmethod
    def reset(self, event: events.Reset) -> list[Part]:
        """A new attempt: everything the earlier one sent is void."""

    @abc.abstractmethod
    def error(self, event: events.Error) -> list[Part]:
        """A problem the run goes on after."""

    @abc.abstractmethod
    def done(self, event: events.Done) -> list[Part]:
        """The run's answer: the end."""

    @abc.abstractmethod
    def failed(self, event: events.Failed) -> list[Part]:
        """The run failed: the end."""

    @abc.abstractmethod
    def cancelled(self, event: events.Cancelled) -> list[Part]:
        """The run was cancelled: the end."""


def sse_data(parts: Iterable[Part]) -> bytes:
    """Each part as one SSE ``data:`` event (both protocols frame their JSON so)."""
    # msgspec escapes line breaks inside strings: a JSON document is one line.
    return b"".join([b"data: %b\n\n" % _encoder.encode(part) for part in parts])


def json_or_text(text: str) -> Any:
    """A tool's output as JSON when it is JSON (SQL rows, listings), else the text itself."""
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return text


def text_of(parts: Iterable[Any]) -> str:
    """The text of a message's text parts (``{"type": "text", "text": ...}``) in order; any
    other part is passed over."""
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )
