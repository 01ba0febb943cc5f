/** The state machine `useRun()` keeps, run as a plain reducer (react.test.ts renders the hook). */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  initialRunState,
  runReducer,
  type RunAction,
  type RunEvent,
  type RunState,
} from "@agentstream/client";

function fold(events: RunEvent[], run = "run_a"): RunState {
  const actions: RunAction[] = [
    { type: "follow", run },
    ...events.map((event, i): RunAction => ({
      type: "event",
      run: event.run,
      received: { id: String((i + 1) * 1000), event, data: JSON.stringify(event) },
      proof: event.type === "done" ? "verified" : "pending",
      checkpoint: null,
    })),
  ];
  return actions.reduce(runReducer, initialRunState);
}

test("a run's events fold into its stage, text, tools and result", () => {
  const state = fold([
    { type: "status", run: "run_a", stage: "sandbox_ready" },
    { type: "token", run: "run_a", text: "Hel" },
    {
      type: "tool_start",
      run: "run_a",
      call_id: "c1",
      name: "run_sql",
      input: { sql: "SELECT 1" },
    },
    { type: "tool_end", run: "run_a", call_id: "c1", name: "run_sql", output: "1" },
    { type: "error", run: "run_a", message: "slow model" },
    { type: "token", run: "run_a", text: "lo" },
  ]);
  assert.equal(state.phase, "streaming");
  assert.equal(state.stage, "sandbox_ready");
  assert.equal(state.text, "Hello");
  assert.deepEqual(state.tools, [
    { callId: "c1", name: "run_sql", input: { sql: "SELECT 1" }, output: "1", error: null },
  ]);
  assert.deepEqual(state.notices, ["slow model"]);
});

test("a reset drops the earlier attempt's text and tools", () => {
  const state = fold([
    { type: "token", run: "run_a", text: "partial" },
    { type: "tool_start", run: "run_a", call_id: "c1", name: "run" },
    { type: "reset", run: "run_a", attempt: 2 },
    { type: "token", run: "run_a", attempt: 2, text: "again" },
  ]);
  assert.equal(state.attempt, 2);
  assert.equal(state.text, "again");
  assert.deepEqual(state.tools, []);
});

test("terminal events end the phase: done with its result, failed and cancelled with a reason", () => {
  const done = fold([{ type: "done", run: "run_a", result: { final_answer: "42" } }]);
  assert.equal(done.phase, "done");
  assert.equal(done.result?.final_answer, "42");
  assert.equal(done.proof, "verified");
  assert.equal(fold([{ type: "failed", run: "run_a", reason: "deadline" }]).reason, "deadline");
  assert.equal(fold([{ type: "cancelled", run: "run_a" }]).phase, "cancelled");
});

test("events of a run no longer followed are ignored; a fatal error ends the phase, another does not", () => {
  const state = fold([{ type: "token", run: "run_old", text: "stale" }]);
  assert.equal(state.text, "");
  const shown = runReducer(state, {
    type: "error",
    error: new Error("cancel refused"),
    fatal: false,
  });
  assert.equal(shown.phase, "streaming");
  assert.equal(
    runReducer(shown, { type: "error", error: new Error("gone"), fatal: true }).phase,
    "error",
  );
  assert.equal(runReducer(shown, { type: "start" }).phase, "starting");
});
