"""agentstream.devstack.loadtest.http1: chunked bodies decoded from blocks split anywhere."""

from __future__ import annotations

import pytest

from agentstream.devstack.loadtest.http1 import Dechunker

PAYLOADS = [b"id: 1\r\ndata: a\r\n\r\n", b"x" * 300, b"\r\n", b"last"]
BODY = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in PAYLOADS) + b"0\r\n\r\n"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 17, 64, len(BODY)])
def test_any_split_of_the_body_gives_back_the_payload(size: int) -> None:
    dechunker = Dechunker()
    out = b""
    start = 0
    while not dechunker.finished:
        assert start < len(BODY), "ran out of body before the last chunk"
        out += dechunker.feed(BODY[start : start + size])
        start += size
    # It ends at the last chunk: the final CRLF (or trailers) is left unread.
    assert start >= len(BODY) - 2
    assert out == b"".join(PAYLOADS)


def test_chunk_extensions_are_ignored() -> None:
    dechunker = Dechunker()
    assert dechunker.feed(b"4;name=value\r\nabcd\r\n0\r\n\r\n") == b"abcd"
    assert dechunker.finished


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n", b"3\r\nabcXY", b"-3\r\nabc\r\n"])
def test_a_malformed_body_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        Dechunker().feed(body)
