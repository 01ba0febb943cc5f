"""Encoders and decoders, built once per process and reused."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import Event

encoder = msgspec.json.Encoder()
event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
event_batch_decoder: msgspec.json.Decoder[Event | list[Event]] = msgspec.json.Decoder(
    Event | list[Event]
)


def encode(value: Any) -> bytes:
    """Encode any schema value (or plain JSON value) to JSON bytes."""
    return encoder.encode(value)


def _too_deep() -> msgspec.DecodeError:
    # Values typed Any (tool inputs) or unknown fields may nest arbitrarily; past what the
    # decoder's stack allows, that is malformed input, not a server error.
    return msgspec.DecodeError("JSON nested too deeply")


def decode_event(data: bytes) -> Event:
    """Decode one stored or published event."""
    try:
        return event_decoder.decode(data)
    except RecursionError:
        raise _too_deep() from None


def decode_event_batch(data: bytes) -> list[Event]:
    """Decode a bridge body: one event or a JSON array of events."""
    try:
        decoded = event_batch_decoder.decode(data)
    except RecursionError:
        raise _too_deep() from None
    return decoded if isinstance(decoded, list) else [decoded]
