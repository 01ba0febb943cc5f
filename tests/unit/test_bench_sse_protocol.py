"""The bench generator's SSE protocol: every event's data, once and in order, however the
socket cuts the response."""

from __future__ import annotations

import asyncio
import random

from benchmarks.sse_protocol import SseProtocol, StreamRejected


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)

    def close(self) -> None:
        self.closed = True


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_BODY = _chunked(
    b": opened\n\nretry: 1000\n\n",
    b'id: 1\nevent: token\ndata: {"n":1}\n\n',
    b'id: 2\r\nevent: token\r\ndata: {"n":2}\r\n\r\ndata: {"n":3}\r\r',
    b"data: first line\ndata: second line\nid: 4\n\n",
    b'event: x\ndata:{"n":5,"text":"data: inside"}\n\n: ping\n\n',
)
_EXPECTED = [
    b'{"n":1}',
    b'{"n":2}',
    b'{"n":3}',
    b"first line\nsecond line",
    b'{"n":5,"text":"data: inside"}',
]


def _feed(cuts: list[int]) -> tuple[list[bytes], SseProtocol, _Transport]:
    received: list[bytes] = []
    protocol = SseProtocol(b"GET / HTTP/1.1\r\n\r\n", received.extend)
    transport = _Transport()
    protocol.connection_made(transport)
    response = _HEAD + _BODY
    for start, stop in zip([0, *cuts], [*cuts, len(response)], strict=True):
        protocol.data_received(response[start:stop])
    return received, protocol, transport


async def test_every_event_arrives_once_in_order_wherever_the_reads_split_the_response() -> None:
    total = len(_HEAD) + len(_BODY)
    splits = [[], list(range(1, total))]  # one read; a byte per read
    rng = random.Random(7)
    splits += [sorted(rng.sample(range(1, total), k)) for k in (2, 5, 20, 60) for _ in range(25)]
    for cuts in splits:
        received, protocol, transport = _feed(cuts)
        assert received == _EXPECTED, cuts
        # The final zero-size chunk ends the stream.
        assert protocol.closed.done() and protocol.closed.result() is None
        assert transport.closed
        assert transport.sent == b"GET / HTTP/1.1\r\n\r\n"


async def test_a_stream_answered_other_than_200_is_closed_with_the_status() -> None:
    received: list[bytes] = []
    protocol = SseProtocol(b"GET / HTTP/1.1\r\n\r\n", received.extend)
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
    outcome = protocol.closed.result()
    assert isinstance(outcome, StreamRejected) and "429" in str(outcome)
    assert transport.closed and received == []
