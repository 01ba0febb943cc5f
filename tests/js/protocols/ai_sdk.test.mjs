// The AI SDK's own chat (what useChat wraps: AbstractChat with React's state, here a plain one)
// and its stream reader, against a gateway's UI message stream routes.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AbstractChat,
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";
import {
  ANALYSIS,
  GATEWAYS,
  SANDBOX_TASK,
  SLOW_ORG,
  cancelRun,
  conversationId,
  conversationToken,
  fixture,
  lastStage,
  nativeEvents,
  runNamed,
  tokenText,
  watchingFetch,
} from "./gateway.mjs";

const [GATEWAY, OTHER_GATEWAY] = GATEWAYS;

// @ai-sdk/react's Chat, minus React: the same AbstractChat, with state kept in plain fields and
// messages snapshotted with structuredClone as React's state does.
class NodeChat extends AbstractChat {
  constructor({ messages = [], ...init }) {
    const state = {
      status: "ready",
      error: undefined,
      messages,
      pushMessage(message) {
        this.messages = this.messages.concat(message);
      },
      popMessage() {
        this.messages = this.messages.slice(0, -1);
      },
      replaceMessage(index, message) {
        this.messages = [
          ...this.messages.slice(0, index),
          this.snapshot(message),
          ...this.messages.slice(index + 1),
        ];
      },
      snapshot: (thing) => structuredClone(thing),
    };
    super({ ...init, state });
  }
}

function chat({ id, api, fetch, messages }) {
  const finished = [];
  const errors = [];
  const instance = new NodeChat({
    id,
    messages,
    transport: new DefaultChatTransport({ api, fetch }),
    onFinish: (outcome) => finished.push(outcome),
    onError: (error) => errors.push(error),
  });
  return { chat: instance, finished, errors };
}

const textOf = (message) =>
  message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");

// The analysis run of the first test, read again by the run-keyed route's test.
let analysis;

test("useChat's Chat renders a run: text, tool parts, SQL and status data parts, finish", async () => {
  const id = conversationId("aisdk");
  const { chat: c, finished, errors } = chat({ id, api: `${GATEWAY}/api/ai-sdk/chat` });
  await c.sendMessage({ text: ANALYSIS });
  assert.deepEqual(errors, []);
  assert.equal(c.status, "ready");
  assert.equal(c.messages.length, 2);
  const [user, assistant] = c.messages;
  assert.equal(textOf(user), ANALYSIS);
  assert.equal(assistant.role, "assistant");
  const run = assistant.id;
  assert.match(run, /^run_/);
  const events = await nativeEvents(GATEWAY, run);

  // Every token once, in order: the text parts joined are the run's tokens joined.
  assert.equal(textOf(assistant), tokenText(events));
  const tools = assistant.parts.filter((p) => p.type === "dynamic-tool");
  assert.deepEqual(
    tools.map((t) => [t.toolName, t.state]),
    [
      ["list_tables", "output-available"],
      ["describe_table", "output-available"],
      ["run_sql", "output-available"],
    ],
  );
  const nativeCalls = events.filter((e) => e.event === "tool_start").map((e) => e.data.call_id);
  assert.deepEqual(tools.map((t) => t.toolCallId), nativeCalls);
  const sql = assistant.parts.filter((p) => p.type === "data-sql");
  assert.equal(sql.length, 1);
  assert.equal(sql[0].data.query, tools[2].input.query);
  assert.equal(sql[0].data.rows.length, 5);
  assert.deepEqual(sql[0].data.columns, tools[2].output.columns);
  // One status part, updated in place to the run's last stage.
  const status = assistant.parts.filter((p) => p.type === "data-status");
  assert.equal(status.length, 1);
  assert.equal(status[0].data.stage, lastStage(events));
  const done = events.at(-1);
  assert.equal(done.event, "done");
  const result = assistant.parts.find((p) => p.type === "data-result");
  assert.equal(result.data.final_answer, done.data.result.final_answer);
  assert.deepEqual(assistant.metadata, { run, outcome: "done", attempt: 1 });
  assert.equal(assistant.parts.filter((p) => p.type === "step-start").length, 1);
  assert.equal(finished.length, 1);
  assert.equal(finished[0].finishReason, "stop");
  assert.equal(finished[0].isError, false);
  analysis = assistant;
});

test("GET /api/runs/{run}/ui-stream read by readUIMessageStream is the same message", async () => {
  assert.ok(analysis, "the first test's run");
  const response = await fetch(`${OTHER_GATEWAY}/api/runs/${analysis.id}/ui-stream`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-vercel-ai-ui-message-stream"), "v1");
  assert.match(response.headers.get("content-type"), /^text\/event-stream/);
  const [forReader, raw] = response.body.tee();
  const chunks = parseJsonEventStream({ stream: forReader, schema: uiMessageChunkSchema }).pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        if (!chunk.success) throw chunk.error;
        controller.enqueue(chunk.value);
      },
    }),
  );
  let message;
  for await (const snapshot of readUIMessageStream({ stream: chunks, terminateOnError: true })) {
    message = snapshot;
  }
  assert.equal(message.id, analysis.id);
  assert.deepEqual(message.parts, analysis.parts);
  assert.deepEqual(message.metadata, analysis.metadata);
  const text = await new Response(raw).text();
  assert.ok(text.endsWith("data: [DONE]\n\n"), text.slice(-200));
});

test("a reloaded page resumes the running run through GET {api}/{id}/stream, replacing its message", async () => {
  const id = conversationId("aisdkresume");
  const api = `${GATEWAY}/api/ai-sdk/chat?org=${SLOW_ORG}`;
  const watch = watchingFetch('"type":"text-delta"');
  const first = chat({ id, api, fetch: watch.fetch });
  const sending = first.chat.sendMessage({ text: SANDBOX_TASK });
  await watch.seen;
  // The page reloads mid-run with what it had shown, and resumes on the other replica, holding
  // a conversation token (the reconnect URL keeps the api URL's query).
  const shown = structuredClone(first.chat.messages);
  assert.equal(shown.length, 2);
  const partial = textOf(shown[1]);
  const token = await conversationToken(GATEWAY, id, SLOW_ORG);
  const second = chat({ id, api: `${OTHER_GATEWAY}/api/ai-sdk/chat?token=${token}`, messages: shown });
  await second.chat.resumeStream();
  await sending;

  assert.deepEqual(second.errors, []);
  assert.equal(second.chat.status, "ready");
  assert.equal(second.chat.messages.length, 2, "the replay replaced the message, added none");
  const resumed = second.chat.messages[1];
  assert.equal(resumed.id, shown[1].id);
  const events = await nativeEvents(GATEWAY, resumed.id);
  assert.equal(events.at(-1).event, "done");
  assert.ok(partial.length < tokenText(events).length, "the reload came mid-run");
  assert.equal(textOf(resumed), tokenText(events));
  assert.equal(textOf(first.chat.messages[1]), tokenText(events));
  assert.deepEqual(resumed.metadata, { run: resumed.id, outcome: "done", attempt: 1 });
  assert.equal(second.finished[0].finishReason, "stop");

  // Once the run has ended, a reconnect has nothing to resume: 204, and the chat stays as it is.
  const reconnect = await fetch(`${GATEWAY}/api/ai-sdk/chat/${id}/stream?org=${SLOW_ORG}`);
  assert.equal(reconnect.status, 204);
  const elsewhere = await fetch(`${GATEWAY}/api/ai-sdk/chat/${conversationId("x")}/stream?token=${token}`);
  assert.equal(elsewhere.status, 403, "a conversation token reads its own conversation only");
  const third = chat({ id, api, messages: structuredClone(second.chat.messages) });
  await third.chat.resumeStream();
  assert.equal(third.chat.status, "ready");
  assert.deepEqual(third.chat.messages, second.chat.messages);
  assert.deepEqual(third.errors, []);
});

test("a chat with no run answers 204 to the reconnect", async () => {
  const response = await fetch(`${GATEWAY}/api/ai-sdk/chat/${conversationId("aisdknone")}/stream`);
  assert.equal(response.status, 204);
});

test("a cancelled run ends the message with abort and finish: the chat is ready, not in error", async () => {
  const id = conversationId("aisdkcancel");
  const watch = watchingFetch('"type":"text-delta"');
  const { chat: c, finished, errors } = chat({
    id,
    api: `${GATEWAY}/api/ai-sdk/chat?org=${SLOW_ORG}`,
    fetch: watch.fetch,
  });
  const sending = c.sendMessage({ text: SANDBOX_TASK });
  const run = runNamed(await watch.seen);
  await cancelRun(OTHER_GATEWAY, run);
  await sending;
  assert.deepEqual(errors, []);
  assert.equal(c.status, "ready");
  const assistant = c.messages[1];
  assert.deepEqual(assistant.metadata, { run, outcome: "cancelled", attempt: 1 });
  assert.ok(assistant.parts.filter((p) => p.type === "text").every((p) => p.state === "done"));
  assert.ok(
    assistant.parts.filter((p) => p.type === "dynamic-tool").every((p) => p.state.startsWith("output-")),
  );
  assert.equal(finished[0].finishReason, "other");
  const events = await nativeEvents(GATEWAY, run);
  assert.equal(events.at(-1).event, "cancelled");
  assert.equal(textOf(assistant), tokenText(events));
});

test("a reset (retried attempt) leaves the void attempt in a step of its own, after which the answer is whole", async () => {
  const body = await fixture("ai_sdk_reset.sse");
  const headers = { "content-type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" };
  const { chat: c, errors, finished } = chat({
    id: conversationId("aisdkreset"),
    api: "http://fixture.invalid/api/ai-sdk/chat",
    fetch: async () => new Response(body, { headers }),
  });
  await c.sendMessage({ text: ANALYSIS });
  assert.deepEqual(errors, []);
  const parts = c.messages[1].parts;
  const reset = parts.findLastIndex((p) => p.type === "data-reset");
  assert.ok(reset > 0);
  assert.deepEqual(parts[reset].data, { attempt: 2, reason: "the agent call was retried" });
  assert.equal(parts.filter((p) => p.type === "step-start").length, 2);
  const voided = parts.slice(0, reset).filter((p) => p.type === "dynamic-tool");
  assert.deepEqual(
    voided.map((p) => [p.toolCallId, p.state, p.errorText]),
    [["call_run_sql_1", "output-error", "void: attempt 2 restarted the run"]],
  );
  const shown = { ...c.messages[1], parts: parts.slice(reset + 1) };
  assert.equal(textOf(shown), "Second try: Aceh has 3.");
  const tools = shown.parts.filter((p) => p.type === "dynamic-tool");
  assert.deepEqual(tools.map((p) => [p.toolCallId, p.state]), [["call_run_sql_1", "output-available"]]);
  assert.equal(c.messages[1].metadata.attempt, 2);
  assert.equal(finished[0].finishReason, "stop");
});
