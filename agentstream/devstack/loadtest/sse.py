"""Server-sent events parsed straight from body bytes, as few Python steps per event as possible.

``data`` stays bytes: the completeness proof hashes it as received, and only the terminal event
is ever decoded as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched event: its ``id:`` (None when absent), ``event:`` and ``data:``."""

    id: int | None
    event: str
    data: bytes


class MalformedStream(Exception):
    """An ``id:`` that is not a non-negative integer, which every stream of a run has."""


class FrameParser:
    """Feed body chunks in, get complete frames out; comments and ``retry:`` are skipped.

    Line ends may be ``\\r\\n``, ``\\n`` or ``\\r`` (the SSE grammar allows all three), also when a
    chunk boundary splits a ``\\r\\n``.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Frame]:
        """The frames completed by ``chunk``."""
        data = self._buffer + chunk
        # A trailing \r may be the first half of \r\n: decide once the next byte is known.
        hold = data.endswith(b"\r")
        if hold:
            data = data[:-1]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        self._buffer = rest + b"\r" if hold else rest
        frames = []
        for block in blocks:
            frame = _parse_block(block)
            if frame is not None:
                frames.append(frame)
        return frames


def _parse_block(block: bytes) -> Frame | None:
    event = "message"
    event_id: int | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # ":" starts a comment
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
        elif name == b"id":
            # isdigit on bytes is ASCII-only, so int() reads exactly what the server meant.
            if not value.isdigit():
                raise MalformedStream(f"event id {value!r} is not a non-negative integer")
            event_id = int(value)
    if not data:
        return None
    return Frame(id=event_id, event=event, data=b"\n".join(data))
