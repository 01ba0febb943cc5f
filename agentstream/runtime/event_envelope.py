"""Several events of a run stored as one message: how a callback-bridge post is kept.

One message per post makes the post one publish and one acknowledgement, stored all or none and
in order by construction, and lets JetStream's own ``Nats-Msg-Id`` de-duplication recognise a
retried post. The message's data is a JSON array of the events, ``Agentstream-Events`` their
count and ``Agentstream-Type`` their types, comma-separated, so a relay frames every event
without decoding one. A message without ``Agentstream-Events`` holds a single event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from agentstream.runtime.event_publisher import EVENT_TYPE_HEADER

EVENT_COUNT_HEADER = "Agentstream-Events"

_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])


class MalformedEnvelope(ValueError):
    """A message whose headers and data disagree on the events it holds."""


def pack(types: Sequence[str], datas: Sequence[bytes]) -> tuple[dict[str, str], bytes]:
    """The headers naming several encoded events, and the data holding them, in order."""
    return (
        {EVENT_COUNT_HEADER: str(len(datas)), EVENT_TYPE_HEADER: ",".join(types)},
        b"[" + b",".join(datas) + b"]",
    )


def unpack(headers: Mapping[str, str], data: bytes) -> list[tuple[str, bytes]]:
    """The type and JSON bytes of every event a stored message holds, in order."""
    types = headers.get(EVENT_TYPE_HEADER, "message")
    if EVENT_COUNT_HEADER not in headers:
        return [(types, data)]
    names = types.split(",")
    try:
        parts = _SPLIT.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedEnvelope(f"unreadable events: {exc}") from None
    if len(parts) != len(names) or headers[EVENT_COUNT_HEADER] != str(len(parts)):
        raise MalformedEnvelope(f"{len(parts)} events, {len(names)} types")
    return [(name, bytes(part)) for name, part in zip(names, parts, strict=True)]
