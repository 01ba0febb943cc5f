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


def decode_event(data: bytes) -> Event:
    """Decode one stored or published event."""
    return event_decoder.decode(data)


def decode_event_batch(data: bytes) -> list[Event]:
    """Decode a bridge body: one event or a JSON array of events."""
    decoded = event_batch_decoder.decode(data)
    return decoded if isinstance(decoded, list) else [decoded]
