"""A run's stored events translated into the frontend protocols agentstream also speaks.

Each translator is a pure, per-connection object: it takes the run's events in order, from the
run's first, and returns the protocol's messages; it does no I/O. The routes that serve them are
in ``gateway.routes.ui_message_stream`` and ``gateway.routes.ag_ui_events``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from schemas import Event

_encoder = msgspec.json.Encoder()

# One protocol message: a JSON object.
Part = dict[str, Any]


class Translator(Protocol):
    """One connection's translation of one run, fed the run's events in order from its first."""

    def start(self) -> list[Part]:
        """The messages that open the stream, before any event."""

    def translate(self, event: Event) -> list[Part]:
        """The messages that stand for ``event``."""


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
