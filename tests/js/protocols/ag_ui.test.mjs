// @ag-ui/client's HttpAgent (which verifies the order of events, not only their shapes) and its
// stream pipeline, against a gateway's AG-UI routes.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { HttpAgent, runHttpRequest, transformHttpEventStream, verifyEvents } from "@ag-ui/client";
import { lastValueFrom, toArray } from "rxjs";
import {
  ANALYSIS,
  GATEWAYS,
  SANDBOX_TASK,
  SLOW_ORG,
  cancelRun,
  conversationId,
  fixture,
  lastStage,
  nativeEvents,
  tokenText,
} from "./gateway.mjs";

const [GATEWAY, OTHER_GATEWAY] = GATEWAYS;

function agent({ url, threadId, prompt, fetch }) {
  return new HttpAgent({
    url,
    threadId,
    fetch,
    initialMessages: [{ id: randomUUID(), role: "user", content: prompt }],
  });
}

/** Run the agent, recording every event it applied; the run's result and new messages. */
async function run(httpAgent, runId, subscriber = {}) {
  const events = [];
  const outcome = await httpAgent.runAgent(
    { runId },
    { ...subscriber, onEvent: ({ event }) => void events.push(event) },
  );
  return { ...outcome, events };
}

const assistantText = (messages) =>
  messages
    .filter((m) => m.role === "assistant" && typeof m.content === "string")
    .map((m) => m.content)
    .join("");

let analysis;

test("HttpAgent runs the agent: verified order, messages with tool calls and results, state", async () => {
  const threadId = conversationId("agui");
  const runId = randomUUID();
  const a = agent({ url: `${GATEWAY}/api/ag-ui`, threadId, prompt: ANALYSIS });
  const { result, newMessages, events } = await run(a, runId);

  assert.equal(events[0].type, "RUN_STARTED");
  assert.equal(events[0].threadId, threadId);
  assert.equal(events[0].runId, runId);
  const agentstreamRun = events[0].metadata.agentstream_run;
  assert.match(agentstreamRun, /^run_/);
  assert.equal(events.at(-1).type, "RUN_FINISHED");
  assert.deepEqual(events.at(-1).outcome, { type: "success" });
  const native = await nativeEvents(GATEWAY, agentstreamRun);
  assert.equal(result.final_answer, native.at(-1).data.result.final_answer);

  // Every token once, in order, in the assistant's messages.
  assert.equal(assistantText(a.messages), tokenText(native));
  const calls = a.messages.flatMap((m) => m.toolCalls ?? []);
  assert.deepEqual(
    calls.map((c) => c.function.name),
    ["list_tables", "describe_table", "run_sql"],
  );
  const query = native.find((e) => e.event === "tool_start" && e.data.name === "run_sql").data.input;
  assert.deepEqual(JSON.parse(calls[2].function.arguments), query);
  const results = a.messages.filter((m) => m.role === "tool");
  assert.deepEqual(results.map((m) => m.toolCallId), calls.map((c) => c.id));
  assert.equal(JSON.parse(results[2].content).rows.length, 5);
  assert.equal(a.state.status.stage, lastStage(native));
  assert.equal(newMessages.length, a.messages.length - 1);
  analysis = { threadId, runId, agentstreamRun, types: events.map((e) => e.type) };
});

test("a retried post with the same runId gets the same run, replayed whole", async () => {
  assert.ok(analysis, "the first test's run");
  const again = agent({ url: `${OTHER_GATEWAY}/api/ag-ui`, threadId: analysis.threadId, prompt: ANALYSIS });
  const { events } = await run(again, analysis.runId);
  assert.equal(events[0].metadata.agentstream_run, analysis.agentstreamRun);
  assert.deepEqual(
    events.map((e) => e.type),
    analysis.types,
  );
});

test("GET /api/runs/{run}/ag-ui passes the client's own parsing and verification", async () => {
  assert.ok(analysis, "the first test's run");
  const url = `${OTHER_GATEWAY}/api/runs/${analysis.agentstreamRun}/ag-ui`;
  const events = await lastValueFrom(
    transformHttpEventStream(runHttpRequest(() => fetch(url))).pipe(verifyEvents(), toArray()),
  );
  assert.equal(events[0].runId, analysis.agentstreamRun);
  assert.deepEqual(
    events.map((e) => e.type),
    analysis.types,
  );
});

test("a run cancelled mid-message ends with RUN_FINISHED (outcome cancelled), its message closed", async () => {
  const a = agent({
    url: `${GATEWAY}/api/ag-ui?org=${SLOW_ORG}`,
    threadId: conversationId("aguicancel"),
    prompt: SANDBOX_TASK,
  });
  let agentstreamRun;
  let cancelled;
  const { events } = await run(a, randomUUID(), {
    onRunStartedEvent: ({ event }) => {
      agentstreamRun = event.metadata.agentstream_run;
    },
    onTextMessageContentEvent: () => {
      cancelled ??= cancelRun(OTHER_GATEWAY, agentstreamRun);
    },
  });
  await cancelled;
  assert.deepEqual(events.at(-1).outcome, { type: "cancelled" });
  const native = await nativeEvents(GATEWAY, agentstreamRun);
  assert.equal(native.at(-1).event, "cancelled");
  assert.equal(assistantText(a.messages), tokenText(native));
});

test("a reset (retried attempt) drops the void messages from the client's list", async () => {
  const body = await fixture("ag_ui_reset.sse");
  // The message the fixture's POST carried (tests/e2e/test_protocol_clients.py).
  const user = { id: "user-1", role: "user", content: "Berapa koperasi di Aceh?" };
  const a = new HttpAgent({
    url: "http://fixture.invalid/api/ag-ui",
    threadId: "thread-reset",
    initialMessages: [user],
    fetch: async () => new Response(body, { headers: { "content-type": "text/event-stream" } }),
  });
  const { events } = await run(a, "client-run");
  const reset = events.find((e) => e.type === "CUSTOM" && e.name === "agentstream.reset");
  assert.equal(reset.value.attempt, 2);
  const voided = new Set([...reset.value.void.messages, ...reset.value.void.tool_calls]);
  assert.ok(voided.size > 0);
  assert.deepEqual(a.messages[0], user);
  assert.ok(a.messages.every((m) => !voided.has(m.id)));
  assert.ok(a.messages.flatMap((m) => m.toolCalls ?? []).every((c) => !voided.has(c.id)));
  assert.equal(assistantText(a.messages), "Second try: Aceh has 3.");
  assert.deepEqual(events.at(-1).outcome, { type: "success" });
});
