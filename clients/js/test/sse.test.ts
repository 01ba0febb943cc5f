import assert from "node:assert/strict";
import { test } from "node:test";

import { SseParser, type SseMessage } from "@agentstream/client";

const STREAM =
  "\uFEFF: run run_x\nretry: 2000\n\n" +
  'id: 1000\nevent: status\ndata: {"stage":"queued"}\n\n' +
  ": ping\n\n" +
  'id: 2001\r\nevent: token\r\ndata: {"text":"a"}\r\n\r\n' +
  "event: done\rdata: line one\rdata:line two\r\r" +
  'id: 3000\nevent: token\ndata: {"text":"cut';

const EXPECTED: SseMessage[] = [
  { event: "status", data: '{"stage":"queued"}', id: "1000" },
  { event: "token", data: '{"text":"a"}', id: "2001" },
  { event: "done", data: "line one\nline two", id: null },
];

function parseInPieces(text: string, size: number): { messages: SseMessage[]; parser: SseParser } {
  const parser = new SseParser();
  const messages: SseMessage[] = [];
  for (let i = 0; i < text.length; i += size)
    messages.push(...parser.feed(text.slice(i, i + size)));
  return { messages, parser };
}

test("events come out whole, whatever pieces the text arrives in, for every line ending", () => {
  for (let size = 1; size <= STREAM.length; size++) {
    const { messages, parser } = parseInPieces(STREAM, size);
    assert.deepEqual(messages, EXPECTED, `pieces of ${size}`);
    assert.equal(parser.retryMs, 2000);
  }
});

test("an event cut off before its blank line is never dispatched", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed('id: 5\nevent: token\ndata: {"text":"x"}\n'), []);
  assert.deepEqual(parser.feed("\n"), [{ event: "token", data: '{"text":"x"}', id: "5" }]);
});

test("a block without data, an unknown field and a bad retry dispatch nothing", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed("id: 7\nevent: token\n\nfoo: bar\nretry: soon\n\n"), []);
  assert.equal(parser.retryMs, null);
});
