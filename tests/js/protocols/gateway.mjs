// What the protocol tests share: the gateways under test, agentstream's own SSE stream of a run
// (the reference every translated stream is compared with), and small waits on stream content.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (tests/e2e/test_protocol_clients.py sets it)`);
  return value;
}

// Two replicas: a test that reconnects does it on the other one.
export const GATEWAYS = required("AGENTSTREAM_GATEWAYS").split(",");
// An org served by a slow agent: its runs are still going when a test reconnects or cancels.
export const SLOW_ORG = required("AGENTSTREAM_SLOW_ORG");
const FIXTURES = required("AGENTSTREAM_PROTOCOL_FIXTURES");

export const ANALYSIS = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi";
export const SANDBOX_TASK = "Write a script that counts to ten and run it";

/** A fresh conversation ID. */
export function conversationId(prefix) {
  return `${prefix}${randomUUID().replaceAll("-", "")}`.slice(0, 64);
}

/** A run's events as agentstream's own SSE stream sends them: [{id, event, data}], to its end. */
export async function nativeEvents(gateway, run) {
  const response = await fetch(`${gateway}/api/stream/${run}`);
  assert.equal(response.status, 200);
  const events = [];
  for (const block of (await response.text()).split("\n\n")) {
    const fields = {};
    for (const line of block.split("\n")) {
      const colon = line.indexOf(": ");
      if (colon > 0 && !line.startsWith(":")) {
        const name = line.slice(0, colon);
        fields[name] = name in fields ? `${fields[name]}\n${line.slice(colon + 2)}` : line.slice(colon + 2);
      }
    }
    if (fields.event) events.push({ id: fields.id, event: fields.event, data: JSON.parse(fields.data) });
  }
  return events;
}

/** What the run's token events say, joined: the text a client must show, once. */
export function tokenText(events) {
  return events.filter((e) => e.event === "token").map((e) => e.data.text).join("");
}

/** The stage of the run's last status event. */
export function lastStage(events) {
  return events.filter((e) => e.event === "status").at(-1).data.stage;
}

/** A conversation token (the conversation's stream, and the AI SDK reconnect, take it). */
export async function conversationToken(gateway, conversation, org) {
  const url = `${gateway}/api/conversations/${conversation}/stream-token?org=${org}`;
  const response = await fetch(url, { method: "POST" });
  const body = await response.text();
  assert.equal(response.status, 200, body);
  return JSON.parse(body).stream_token;
}

/** Cancel a run through the gateway. */
export async function cancelRun(gateway, run) {
  const response = await fetch(`${gateway}/api/runs/${run}/cancel`, { method: "POST" });
  assert.equal(response.status, 202, await response.text());
}

/**
 * A fetch whose responses resolve `seen` once their body has carried `needle`: a test waits on
 * the stream itself reaching a point, never on time.
 */
export function watchingFetch(needle) {
  let resolve;
  const seen = new Promise((r) => (resolve = r));
  const decoder = new TextDecoder();
  let text = "";
  const watched = async (url, init) => {
    const response = await fetch(url, init);
    if (!response.body) return response;
    const body = response.body.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          text += decoder.decode(chunk, { stream: true });
          const at = text.indexOf(needle);
          if (at >= 0) resolve(text);
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetch: watched, seen };
}

/** The first `"messageId":"run_…"` or `"agentstream_run":"run_…"` a stream named. */
export function runNamed(text) {
  const found = /"(?:messageId|agentstream_run)":"(run_[A-Za-z0-9_-]+)"/.exec(text);
  assert.ok(found, `no run named in ${text.slice(0, 300)}`);
  return found[1];
}

/** A fixture stream written by the Python test from the gateway's own translators. */
export async function fixture(name) {
  return readFile(join(FIXTURES, name), "utf8");
}
