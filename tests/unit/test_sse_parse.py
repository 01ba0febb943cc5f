"""agentstream.devstack.sse_client.parse_sse, fed lines the way httpx's aiter_lines yields them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import httpx
import pytest

from agentstream.devstack.sse_client import SseMessage, parse_sse


async def _lines(lines: Iterable[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def parse(lines: Iterable[str]) -> list[SseMessage]:
    return [m async for m in parse_sse(_lines(lines))]


async def parse_wire(raw: bytes, chunk: int = 7) -> list[SseMessage]:
    """Parse a raw SSE body split through httpx's own line splitting, in awkward chunks."""

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), chunk):
            yield raw[i : i + chunk]

    response = httpx.Response(200, content=body())
    return [m async for m in parse_sse(response.aiter_lines())]


async def test_single_event_with_id_and_type() -> None:
    messages = await parse(["id: 5", "event: token", 'data: {"text": "hi"}', ""])
    assert messages == [SseMessage(event="token", data='{"text": "hi"}', id="5")]
    assert messages[0].json() == {"text": "hi"}
    assert not messages[0].terminal


async def test_event_defaults_to_message_and_id_to_none() -> None:
    assert await parse(["data: x", ""]) == [SseMessage(event="message", data="x", id=None)]


async def test_multi_line_data_is_joined_with_newlines() -> None:
    messages = await parse(["data: line one", "data: line two", "data:", "data: four", ""])
    assert messages[0].data == "line one\nline two\n\nfour"


async def test_only_one_leading_space_is_stripped() -> None:
    messages = await parse(["data:  two spaces", "data:nospace", "data: a: b", ""])
    assert messages[0].data == " two spaces\nnospace\na: b"


async def test_comments_and_retry_lines_are_skipped() -> None:
    lines = [": ping", ":", "retry: 2000", "id: 1", ": keep-alive", "data: x", "", ": ping", ""]
    assert await parse(lines) == [SseMessage(event="message", data="x", id="1")]


async def test_unknown_fields_are_ignored() -> None:
    assert await parse(["foo: bar", "data: x", "weird", ""]) == [SseMessage("message", "x")]


async def test_fields_reset_between_events() -> None:
    lines = ["id: 1", "event: status", "data: a", "", "data: b", ""]
    assert await parse(lines) == [
        SseMessage(event="status", data="a", id="1"),
        SseMessage(event="message", data="b", id=None),
    ]


async def test_event_without_data_is_not_emitted() -> None:
    assert await parse(["id: 9", "event: token", "", "data: y", ""]) == [
        SseMessage(event="message", data="y", id=None)
    ]


async def test_blank_lines_alone_emit_nothing() -> None:
    assert await parse(["", "", ""]) == []


async def test_final_event_without_trailing_blank_line_is_dropped() -> None:
    # Per the SSE spec, an event is dispatched only at a blank line; an unterminated last
    # event (connection cut mid-event) is discarded.
    assert await parse(["data: complete", "", "id: 2", "data: cut off"]) == [
        SseMessage(event="message", data="complete")
    ]


@pytest.mark.parametrize("event", ["done", "failed", "cancelled"])
async def test_terminal_events(event: str) -> None:
    [message] = await parse([f"event: {event}", "data: {}", ""])
    assert message.terminal


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
async def test_line_endings_through_httpx(newline: bytes) -> None:
    lines = [b": hello", b"retry: 2000", b"id: 1", b"event: token", b"data: a", b"data: b", b""]
    lines += [b"id: 2", b"event: done", b'data: {"ok": true}', b"", b""]
    raw = newline.join(lines)
    assert await parse_wire(raw) == [
        SseMessage(event="token", data="a\nb", id="1"),
        SseMessage(event="done", data='{"ok": true}', id="2"),
    ]


async def test_utf8_split_across_chunks_through_httpx() -> None:
    raw = "data: héllo 🎉 漢字\n\n".encode()
    for chunk in (1, 2, 3, 5):
        assert await parse_wire(raw, chunk) == [SseMessage("message", "héllo 🎉 漢字")]


async def test_data_with_colons_and_json() -> None:
    [message] = await parse(['data: {"url": "http://x:1/a"}', ""])
    assert message.json() == {"url": "http://x:1/a"}
