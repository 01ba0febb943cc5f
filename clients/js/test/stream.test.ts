/** streamRun's reconnects, on a scripted `fetch`: what it resumes after, what it gives up on. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, StreamError, streamRun, type StreamedEvent } from "@agentstream/client";

const SSE = { "content-type": "text/event-stream" };

function frame(id: number, type: string, extra: Record<string, unknown> = {}): string {
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ type, run: "run_s", ...extra })}\n\n`;
}

/** A body that sends `text`, then stays open without a byte until the request is aborted. */
function stalling(text: string, signal: AbortSignal): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      signal.addEventListener("abort", () => controller.error(signal.reason));
    },
  });
}

/** A `fetch` answering each request with the next of `answers`; it records the requests' headers. */
function scripted(answers: Array<(signal: AbortSignal) => Response>): {
  fetch: typeof fetch;
  seen: Headers[];
} {
  const seen: Headers[] = [];
  return {
    seen,
    fetch: async (_input, init) => {
      seen.push(new Headers(init?.headers));
      const answer = answers[seen.length - 1];
      assert.ok(answer !== undefined, "no more answers scripted");
      return answer(init?.signal ?? new AbortController().signal);
    },
  };
}

async function collect(events: AsyncIterable<StreamedEvent>): Promise<StreamedEvent[]> {
  const out: StreamedEvent[] = [];
  for await (const received of events) out.push(received);
  return out;
}

const DONE_WITHOUT_PROOF = `event: done\ndata: ${JSON.stringify({ type: "done", run: "run_s", result: { final_answer: "x" } })}\n\n`;

test("a silent connection is replaced after idleTimeoutMs, resuming after the last event", async () => {
  const { fetch, seen } = scripted([
    (signal) =>
      new Response(stalling(frame(1000, "token", { text: "a" }), signal), { headers: SSE }),
    (signal) =>
      new Response(
        stalling(
          frame(1000, "token", { text: "a" }) +
            frame(2000, "token", { text: "b" }) +
            DONE_WITHOUT_PROOF,
          signal,
        ),
        { headers: SSE },
      ),
  ]);
  const stream = streamRun({ url: "http://scripted.invalid", fetch }, "run_s", {
    idleTimeoutMs: 100,
    maxBackoffMs: 10,
  });
  const events = await collect(stream);
  assert.deepEqual(
    events.map((e) => e.id),
    ["1000", "2000", null],
    "the repeated 1000 is not yielded twice",
  );
  assert.equal(seen[0]?.get("last-event-id"), null);
  assert.equal(seen[1]?.get("last-event-id"), "1000");
  assert.equal(stream.reconnects, 1);
  assert.equal(stream.proof, "unavailable");
});

test("a 503 is retried after its Retry-After; a 4xx is thrown at once as ApiError", async () => {
  const unavailable = () =>
    new Response(JSON.stringify({ error: "unavailable", detail: "NATS restarts" }), {
      status: 503,
      headers: { "content-type": "application/json", "retry-after": "0" },
    });
  const retried = scripted([unavailable, () => new Response(DONE_WITHOUT_PROOF, { headers: SSE })]);
  const stream = streamRun({ url: "http://scripted.invalid", fetch: retried.fetch }, "run_s", {
    maxBackoffMs: 10,
  });
  assert.equal((await collect(stream)).length, 1);
  assert.equal(stream.reconnects, 1);

  const refused = scripted([
    () =>
      new Response(JSON.stringify({ error: "forbidden", detail: "another org's run" }), {
        status: 403,
      }),
  ]);
  await assert.rejects(
    collect(streamRun({ url: "http://scripted.invalid", fetch: refused.fetch }, "run_s")),
    (error: unknown) => {
      assert.ok(error instanceof ApiError);
      assert.deepEqual(
        [error.status, error.code, error.detail],
        [403, "forbidden", "another org's run"],
      );
      return true;
    },
  );
  assert.equal(refused.seen.length, 1);
});

test("a stream that keeps ending without its terminal event gives up after maxReconnects", async () => {
  const ending = () => new Response(frame(1000, "token", { text: "a" }), { headers: SSE });
  const { fetch, seen } = scripted([ending, ending, ending, ending]);
  const stream = streamRun({ url: "http://scripted.invalid", fetch }, "run_s", {
    maxReconnects: 2,
    maxBackoffMs: 1,
  });
  await assert.rejects(collect(stream), StreamError);
  assert.equal(seen.length, 3);
});

test("the caller's signal stops the stream with its reason, also mid-connection", async () => {
  const stop = new AbortController();
  const { fetch } = scripted([
    (signal) =>
      new Response(stalling(frame(1000, "token", { text: "a" }), signal), { headers: SSE }),
  ]);
  const stream = streamRun({ url: "http://scripted.invalid", fetch }, "run_s", {
    signal: stop.signal,
  });
  const reason = new Error("page closed");
  await assert.rejects(
    (async () => {
      for await (const received of stream) {
        assert.equal(received.id, "1000");
        stop.abort(reason);
      }
    })(),
    (error: unknown) => error === reason,
  );
});

test("a non-SSE answer (a proxy's page) is a StreamError, not retried", async () => {
  const { fetch, seen } = scripted([
    () => new Response("<html>", { headers: { "content-type": "text/html" } }),
  ]);
  await assert.rejects(
    collect(streamRun({ url: "http://scripted.invalid", fetch }, "run_s")),
    StreamError,
  );
  assert.equal(seen.length, 1);
});

test("an expired stream token is dropped for the gateway credentials; without them, 401 is thrown", async () => {
  const expired = () =>
    new Response(JSON.stringify({ error: "unauthorized", detail: "stream token expired" }), {
      status: 401,
    });
  const urls: string[] = [];
  const { fetch, seen } = scripted([
    expired,
    () => new Response(DONE_WITHOUT_PROOF, { headers: SSE }),
  ]);
  const recording: typeof fetch = (input, init) => {
    urls.push(String(input));
    return fetch(input, init);
  };
  const gateway = { url: "http://scripted.invalid", token: "key", fetch: recording };
  const stream = streamRun(gateway, "run_s", { streamToken: "old", maxBackoffMs: 1 });
  assert.equal((await collect(stream)).length, 1);
  assert.deepEqual(urls, [
    "http://scripted.invalid/api/stream/run_s?token=old",
    "http://scripted.invalid/api/stream/run_s",
  ]);
  assert.equal(seen[1]?.get("authorization"), "Bearer key");

  const alone = scripted([expired]);
  const tokenOnly = streamRun({ url: "http://scripted.invalid", fetch: alone.fetch }, "run_s", {
    streamToken: "old",
  });
  await assert.rejects(collect(tokenOnly), { name: "ApiError", status: 401, code: "unauthorized" });
});
