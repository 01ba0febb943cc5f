/**
 * The client against a real gateway (tests/e2e/test_js_client.py starts the stack and sets):
 *   AGENTSTREAM_GATEWAYS  the gateway replicas' URLs, comma-separated
 *   AGENTSTREAM_SLOW_ORG  an org whose agent streams slowly, so a run is still going when a test
 *                         cuts its connection or cancels it
 * Without them every test here is skipped (and the pytest test requires none to be).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";

import {
  ApiError,
  CompletenessError,
  cancelRun,
  followRun,
  getRun,
  initialRunState,
  runReducer,
  startRun,
  streamRun,
  type RunState,
  type StreamedEvent,
} from "@agentstream/client";

const GATEWAYS = (process.env["AGENTSTREAM_GATEWAYS"] ?? "").split(",").filter(Boolean);
const SLOW_ORG = process.env["AGENTSTREAM_SLOW_ORG"] ?? "";
const skip =
  GATEWAYS.length < 2 || !SLOW_ORG
    ? "AGENTSTREAM_GATEWAYS and AGENTSTREAM_SLOW_ORG not set"
    : false;
const [GATEWAY = "", OTHER_REPLICA = ""] = GATEWAYS;
const TIMEOUT_MS = 120_000;

async function collect(events: AsyncIterable<StreamedEvent>): Promise<StreamedEvent[]> {
  const out: StreamedEvent[] = [];
  for await (const received of events) out.push(received);
  return out;
}

function assertInOrderOnce(events: StreamedEvent[]): void {
  const ids = events.map((e) => BigInt(e.id ?? -1));
  assert.ok(
    ids.every((id, i) => i === 0 || id > (ids[i - 1] ?? 0n)),
    `ids strictly increasing: ${ids.join(",")}`,
  );
  assert.equal(
    events.filter((e) => ["done", "failed", "cancelled"].includes(e.event.type)).length,
    1,
  );
}

/**
 * A TCP proxy to `upstream` that cuts each of its first `cuts` connections after `frames` SSE
 * blocks (the opening block counts), in the middle of the next one when it is in the same read.
 */
async function cuttingProxy(
  upstream: string,
  frames: number,
  cuts: number,
): Promise<{ url: string; cut: () => number; close: () => Promise<void> }> {
  const target = new URL(upstream);
  let cutsLeft = cuts;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const cutThis = cutsLeft > 0;
    if (cutThis) cutsLeft -= 1;
    const server = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, server]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    client.pipe(server);
    let seen = 0;
    let previous = 0;
    server.on("data", (chunk: Buffer) => {
      if (!cutThis) {
        client.write(chunk);
        return;
      }
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i] ?? 0;
        if (previous === 0x0a && byte === 0x0a && ++seen === frames) {
          // A few bytes of the next block, if they came in this read: a partial event.
          client.write(chunk.subarray(0, Math.min(i + 12, chunk.length)));
          client.destroy();
          server.destroy();
          return;
        }
        previous = byte;
      }
      client.write(chunk);
    });
    server.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => cuts - cutsLeft,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A `fetch` whose stream bodies lose the first `token` event: a loss the proof must catch. */
function losingFetch(): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.headers.get("content-type")?.startsWith("text/event-stream") || !response.body)
      return response;
    let buffer = "";
    let dropped = false;
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    const body = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          buffer += decoder.decode(chunk, { stream: true });
          const blocks = buffer.split("\n\n");
          buffer = blocks.pop() ?? "";
          for (const block of blocks) {
            if (!dropped && block.includes("\nevent: token\n")) {
              dropped = true;
              continue;
            }
            controller.enqueue(encoder.encode(`${block}\n\n`));
          }
        },
      }),
    );
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

test(
  "a run started with startRun streams to done, its proof verified",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, "Write a script that counts to three and run it");
    assert.match(accepted.workflow_id, /^run_/);
    const stream = streamRun(GATEWAY, accepted);
    const events = await collect(stream);
    assertInOrderOnce(events);
    assert.equal(stream.proof, "verified");
    assert.equal(stream.reconnects, 0);
    const done = stream.terminal;
    assert.ok(done?.type === "done", JSON.stringify(done));
    assert.deepEqual(events[0]?.event, { ...events[0]?.event, type: "status", stage: "queued" });
    assert.ok(events.some((e) => e.event.type === "token"));
    assert.equal(done.completeness?.events, events.length - 1);
    const view = await getRun(GATEWAY, accepted.workflow_id);
    assert.equal(view.status, "completed");
    assert.equal(view.result?.final_answer, done.result.final_answer);
  },
);

test(
  "a stream cut mid-run twice resumes by itself with Last-Event-ID: nothing lost, nothing twice",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, {
      message: "Write a script that counts to five and run it",
      org: SLOW_ORG,
    });
    // The opening block, then two events: the cut comes while the agent has barely begun.
    const proxy = await cuttingProxy(GATEWAY, 3, 2);
    const reconnects: Array<string | null> = [];
    try {
      const stream = streamRun(proxy.url, accepted, {
        onReconnect: ({ lastEventId }) => reconnects.push(lastEventId),
      });
      const events = await collect(stream);
      assert.equal(proxy.cut(), 2);
      assert.equal(stream.reconnects, 2);
      assert.equal(stream.proof, "verified");
      assertInOrderOnce(events);
      // Each reconnect resumed after the last event received before it.
      assert.ok(
        reconnects.every((id) => id !== null && events.some((e) => e.id === id)),
        String(reconnects),
      );
      assert.equal(stream.terminal?.type, "done");
      // The same run read again, uncut, from the other replica: the same events, byte for byte.
      const again = await collect(streamRun(OTHER_REPLICA, accepted));
      assert.deepEqual(
        events.map((e) => [e.id, e.data]),
        again.map((e) => [e.id, e.data]),
      );
    } finally {
      await proxy.close();
    }
  },
);

test(
  "a stream left early resumes from its checkpoint on another replica, the proof carried over",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, {
      message: "Write a script that counts to four and run it",
      org: SLOW_ORG,
    });
    const first = streamRun(GATEWAY, accepted);
    const before: StreamedEvent[] = [];
    for await (const received of first) {
      before.push(received);
      if (received.event.type === "token") break;
    }
    const checkpoint = first.checkpoint;
    assert.ok(checkpoint !== null);
    assert.equal(checkpoint.events, before.length);
    const second = streamRun(OTHER_REPLICA, accepted, { resume: checkpoint });
    const after = await collect(second);
    assert.equal(second.proof, "verified");
    assertInOrderOnce([...before, ...after]);
    assert.ok(BigInt(after[0]?.id ?? 0) > BigInt(checkpoint.lastEventId));
  },
);

test(
  "cancelRun ends a running run's stream with cancelled, its proof verified",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, {
      message: "Write a script that counts to nine and run it",
      org: SLOW_ORG,
    });
    const stream = streamRun(GATEWAY, accepted);
    const events: StreamedEvent[] = [];
    let cancelled = false;
    for await (const received of stream) {
      events.push(received);
      if (!cancelled && received.event.type === "token") {
        cancelled = true;
        const view = await cancelRun(GATEWAY, accepted.workflow_id);
        assert.equal(view.workflow_id, accepted.workflow_id);
      }
    }
    assert.ok(cancelled, "a token arrived before the end");
    assertInOrderOnce(events);
    assert.equal(stream.terminal?.type, "cancelled");
    assert.equal(stream.proof, "verified");
    assert.equal((await getRun(GATEWAY, accepted.workflow_id)).status, "cancelled");
  },
);

test(
  "an event lost on the way fails the proof with CompletenessError",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, "Write a script that counts to two and run it");
    const stream = streamRun({ url: GATEWAY, fetch: losingFetch() }, accepted);
    const events: StreamedEvent[] = [];
    await assert.rejects(
      async () => {
        for await (const received of stream) events.push(received);
      },
      (error: unknown) => {
        assert.ok(error instanceof CompletenessError, String(error));
        assert.equal(error.run, accepted.workflow_id);
        assert.equal(error.received.events, error.expected.events - 1);
        return true;
      },
    );
    assert.equal(stream.terminal, null, "no terminal event is yielded over a broken proof");
    assert.ok(!events.some((e) => ["done", "failed", "cancelled"].includes(e.event.type)));
  },
);

test(
  "gateway errors are thrown as ApiError with the body's code and detail",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    await assert.rejects(startRun(GATEWAY, ""), (error: unknown) => {
      assert.ok(error instanceof ApiError, String(error));
      assert.equal(error.status, 400);
      assert.equal(error.code, "bad_request");
      assert.match(error.detail, /message/);
      assert.equal(error.retryable, false);
      return true;
    });
    const unknown = "run_01JS0000000000000000000000";
    await assert.rejects(cancelRun(GATEWAY, unknown), {
      name: "ApiError",
      status: 404,
      code: "not_found",
    });
    await assert.rejects(getRun(GATEWAY, unknown), {
      name: "ApiError",
      status: 404,
      code: "not_found",
    });
    await assert.rejects(collect(streamRun(GATEWAY, "not.a.run")), {
      name: "ApiError",
      status: 400,
      code: "bad_request",
    });
  },
);

test(
  "followRun drives useRun's state machine to done from a real stream",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const accepted = await startRun(GATEWAY, "Write a script that counts to six and run it");
    let state: RunState = initialRunState;
    const phases: string[] = [];
    let tokens = "";
    let streamed = "";
    await followRun(GATEWAY, accepted, (action) => {
      state = runReducer(state, action);
      if (phases.at(-1) !== state.phase) phases.push(state.phase);
      if (action.type === "event" && action.received.event.type === "token") {
        tokens += action.received.event.text;
      }
      if (state.phase === "streaming") streamed = state.text;
    });
    assert.deepEqual(phases, ["streaming", "done"]);
    assert.equal(state.proof, "verified");
    assert.equal(state.run, accepted.workflow_id);
    assert.ok(tokens.length > 0);
    assert.equal(streamed, tokens);
    assert.ok(state.result?.final_answer);
    assert.equal(state.text, state.result.final_answer);
    assert.ok(
      state.tools.length > 0 && state.tools.every((tool) => tool.output !== null),
      JSON.stringify(state.tools),
    );
    assert.ok(state.checkpoint !== null);
  },
);
