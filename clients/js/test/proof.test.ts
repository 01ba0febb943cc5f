/**
 * The proof check on recorded events: the hash is the README's recipe, computed for these
 * events by the Python tests' own copy of it (tests/proof.py), so both sides agree on bytes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CompletenessError,
  CompletenessTally,
  streamRun,
  type StreamedEvent,
} from "@agentstream/client";

const RECORDED: Array<[string, string]> = [
  [
    "1000",
    '{"type":"status","run":"run_rec","attempt":1,"ts":1764500000000000000,"n":0,"stage":"queued","sandbox_id":null,"sandbox_url":null,"model":null,"detail":"","trace_id":null}',
  ],
  [
    "2000",
    '{"type":"token","run":"run_rec","attempt":1,"ts":1764500000100000000,"n":1,"text":"Hello, "}',
  ],
  [
    "2001",
    '{"type":"token","run":"run_rec","attempt":1,"ts":1764500000200000000,"n":2,"text":"wörld 🌍\\n"}',
  ],
  [
    "5000",
    '{"type":"tool_start","run":"run_rec","attempt":1,"ts":1764500000300000000,"n":3,"call_id":"c1","name":"run_sql","input":{"sql":"SELECT 1"}}',
  ],
];
const PROOF = {
  events: 4,
  sha256: "8bd2c59a1d3ac299461af5a82a7614eef0545799067f1ed74245d75773704229",
};

function terminal(proof: { events: number; sha256: string } | null): [string, string] {
  const done = {
    type: "done",
    run: "run_rec",
    result: { final_answer: "Hello, wörld 🌍" },
    completeness: proof,
  };
  return ["6000", JSON.stringify(done)];
}

function sse(events: Array<[string | null, string]>): string {
  return (
    ": run run_rec\nretry: 2000\n\n" +
    events
      .map(
        ([id, data]) =>
          `${id === null ? "" : `id: ${id}\n`}event: ${JSON.parse(data).type}\ndata: ${data}\n\n`,
      )
      .join("")
  );
}

/** A `fetch` that answers every stream request with `body`, in 7-byte pieces. */
function recordedFetch(body: string): typeof fetch {
  return async () => {
    const bytes = new TextEncoder().encode(body);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
        controller.close();
      },
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream; charset=utf-8" },
    });
  };
}

async function collect(body: string): Promise<{ events: StreamedEvent[]; proof: string }> {
  const stream = streamRun(
    { url: "http://recorded.invalid", fetch: recordedFetch(body) },
    "run_rec",
    {
      maxReconnects: 0,
    },
  );
  const events: StreamedEvent[] = [];
  for await (const received of stream) events.push(received);
  return { events, proof: stream.proof };
}

test("the tally of the recorded events is the proof Python computed", async () => {
  const tally = new CompletenessTally();
  for (const [id, data] of RECORDED) await tally.add(id, data);
  assert.deepEqual(tally.state, PROOF);
});

test("a recorded run whose events add up streams to its terminal event, verified", async () => {
  const { events, proof } = await collect(sse([...RECORDED, terminal(PROOF)]));
  assert.equal(proof, "verified");
  assert.deepEqual(
    events.map((e) => [e.id, e.data]),
    [...RECORDED, terminal(PROOF)],
  );
  assert.equal(events.at(-1)?.event.type, "done");
});

const TAMPERINGS: Array<[string, Array<[string | null, string]>]> = [
  ["a changed byte", RECORDED.map(([id, data]) => [id, data.replace("Hello", "Jello")])],
  ["a lost event", RECORDED.filter(([id]) => id !== "2001")],
  ["a changed ID", RECORDED.map(([id, data]) => [id === "5000" ? "4000" : id, data])],
  [
    "an extra event",
    [
      ...RECORDED.slice(0, 2),
      ["2002", '{"type":"token","run":"run_rec","text":"!"}'],
      ...RECORDED.slice(2),
    ],
  ],
];

for (const [what, events] of TAMPERINGS) {
  test(`a recorded run with ${what} throws CompletenessError instead of its terminal event`, async () => {
    await assert.rejects(collect(sse([...events, terminal(PROOF)])), (error: unknown) => {
      assert.ok(error instanceof CompletenessError, String(error));
      assert.deepEqual(error.expected, PROOF);
      assert.notDeepEqual(error.received, PROOF);
      return true;
    });
  });
}

test("a proof that lies about the count is refused too", async () => {
  await assert.rejects(
    collect(sse([...RECORDED, terminal({ ...PROOF, events: 5 })])),
    CompletenessError,
  );
});

test("a done without a proof (rebuilt after its events expired) is yielded as unavailable", async () => {
  const { events, proof } = await collect(sse([[null, terminal(null)[1]]]));
  assert.equal(proof, "unavailable");
  assert.equal(events.length, 1);
  assert.equal(events[0]?.id, null);
});

test("a tally resumed from a checkpoint ends where one tally over everything ends", async () => {
  const first = new CompletenessTally();
  for (const [id, data] of RECORDED.slice(0, 2)) await first.add(id, data);
  const second = new CompletenessTally(first.state);
  for (const [id, data] of RECORDED.slice(2)) await second.add(id, data);
  assert.deepEqual(second.state, PROOF);
});
