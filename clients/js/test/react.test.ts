/**
 * useRun() rendered by React itself (react-test-renderer, in StrictMode, which mounts every
 * effect twice) against the real gateway; skipped without one, like gateway.test.ts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createElement, StrictMode } from "react";
import { create } from "react-test-renderer";

import { streamRun, type RunPhase } from "@agentstream/client";
import { useRun, type UseRun } from "@agentstream/client/react";

const GATEWAYS = (process.env["AGENTSTREAM_GATEWAYS"] ?? "").split(",").filter(Boolean);
const SLOW_ORG = process.env["AGENTSTREAM_SLOW_ORG"] ?? "";
const skip = GATEWAYS.length < 2 || !SLOW_ORG ? "AGENTSTREAM_GATEWAYS not set" : false;
const GATEWAY = GATEWAYS[0] ?? "";
const TIMEOUT_MS = 120_000;
const ENDED: ReadonlySet<RunPhase> = new Set(["done", "failed", "cancelled", "error"]);

interface Waiter {
  predicate: (state: UseRun) => boolean;
  resolve: (state: UseRun) => void;
}

/** Renders a component that calls useRun(); keeps every state it renders, in order. */
async function renderHook(): Promise<{
  renders: UseRun[];
  latest: () => UseRun;
  /** The first state rendered from now on for which `predicate` holds. */
  until: (predicate: (state: UseRun) => boolean) => Promise<UseRun>;
  unmount: () => void;
}> {
  const renders: UseRun[] = [];
  const waiters = new Set<Waiter>();
  const until = (predicate: (state: UseRun) => boolean) =>
    new Promise<UseRun>((resolve) => waiters.add({ predicate, resolve }));
  function Probe(): null {
    const state = useRun(GATEWAY);
    renders.push(state);
    for (const waiter of waiters) {
      if (waiter.predicate(state)) {
        waiters.delete(waiter);
        waiter.resolve(state);
      }
    }
    return null;
  }
  // No act(): React schedules its renders as it does in a page; the tests wait on them.
  const first = until(() => true);
  const renderer = quietly(() => create(createElement(StrictMode, null, createElement(Probe))));
  await first;
  return {
    renders,
    latest: () => renders.at(-1) as UseRun,
    until,
    unmount: () => renderer.unmount(),
  };
}

/** react-test-renderer says it is deprecated each time it renders: that one message is kept out. */
function quietly<T>(body: () => T): T {
  const error = console.error;
  console.error = (...args: unknown[]) => {
    if (!String(args[0]).startsWith("react-test-renderer is deprecated")) error(...args);
  };
  try {
    return body();
  } finally {
    console.error = error;
  }
}

test(
  "useRun under React StrictMode starts a run and renders it to done, each token once",
  { skip, timeout: TIMEOUT_MS },
  async () => {
    const hook = await renderHook();
    try {
      assert.equal(hook.latest().phase, "idle");
      const ended = hook.until((state) => ENDED.has(state.phase));
      await hook.latest().start("Write a script that counts to seven and run it");
      const done = await ended;
      assert.equal(done.phase, "done", String(done.error));
      assert.equal(done.proof, "verified");
      const phases = hook.renders.map((s) => s.phase).filter((p, i, all) => p !== all[i - 1]);
      assert.deepEqual(phases, ["idle", "starting", "streaming", "done"]);
      // The text as streamed, before done put the answer in its place: the run's tokens, each
      // once, though StrictMode opened the stream twice.
      const streamed = hook.renders.filter((s) => s.phase === "streaming").at(-1)?.text;
      let tokens = "";
      for await (const { event } of streamRun(GATEWAY, done.run ?? "")) {
        if (event.type === "token") tokens += event.text;
      }
      assert.ok(tokens.length > 0);
      assert.equal(streamed, tokens);
      assert.ok(done.result?.final_answer);
    } finally {
      hook.unmount();
    }
  },
);

test("useRun's cancel() ends a slow run cancelled", { skip, timeout: TIMEOUT_MS }, async () => {
  const hook = await renderHook();
  try {
    const streaming = hook.until((state) => state.text.length > 0);
    await hook.latest().start({ message: "Write a script that counts to eight", org: SLOW_ORG });
    await streaming;
    const ended = hook.until((state) => ENDED.has(state.phase));
    await hook.latest().cancel();
    const cancelled = await ended;
    assert.equal(cancelled.phase, "cancelled", String(cancelled.error));
    assert.equal(cancelled.proof, "verified");
  } finally {
    hook.unmount();
  }
});
