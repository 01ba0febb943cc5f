/**
 * `useRun()`: a run's state in a React component, streamed, resumed and proof-checked by
 * `streamRun()`. Its own entry point (`@agentstream/client/react`), so the main one never needs
 * React.
 */

import { useCallback, useEffect, useReducer, useRef, useState } from "react";

import type { Gateway } from "./gateway.js";
import type { MessageAccepted, PostMessage } from "./generated/schemas.js";
import { followRun, initialRunState, runReducer, type RunState } from "./run-state.js";
import { cancelRun, startRun, type StartOptions } from "./runs.js";
import type { StreamOptions } from "./stream.js";

export type { RunState, ToolActivity, RunPhase } from "./run-state.js";

export interface UseRunOptions {
  /** Passed on to `streamRun()` (its `signal` is the hook's own). */
  stream?: Omit<StreamOptions, "signal">;
}

export interface UseRun extends RunState {
  /** Post a message and follow the run it starts (the previous run's stream is closed). */
  start: (message: string | PostMessage, options?: StartOptions) => Promise<void>;
  /** Ask the gateway to cancel the current run; the stream then ends with `cancelled`. */
  cancel: () => Promise<void>;
}

/** Follow `run` (an ID or `startRun()`'s answer), or a run started with `start()`. */
export function useRun(
  gateway: Gateway,
  run: string | MessageAccepted | null = null,
  options: UseRunOptions = {},
): UseRun {
  const [state, dispatch] = useReducer(runReducer, initialRunState);
  const [started, setStarted] = useState<MessageAccepted | null>(null);
  // The latest arguments, without restarting the stream when a caller passes new objects.
  const latest = useRef({ gateway, options });
  latest.current = { gateway, options };
  const target = started ?? run;
  const key = target === null ? null : typeof target === "string" ? target : target.workflow_id;

  useEffect(() => {
    if (target === null) return undefined;
    const stop = new AbortController();
    const { gateway: current, options: opts } = latest.current;
    void followRun(current, target, dispatch, { ...opts.stream, signal: stop.signal });
    return () => stop.abort();
    // Only a different run restarts the stream: `target` is read through `key`.
  }, [key]);

  const start = useCallback(async (message: string | PostMessage, startOptions?: StartOptions) => {
    dispatch({ type: "start" });
    try {
      setStarted(await startRun(latest.current.gateway, message, startOptions));
    } catch (error) {
      dispatch({ type: "error", error, fatal: true });
    }
  }, []);

  const cancel = useCallback(async () => {
    if (key === null) return;
    try {
      await cancelRun(latest.current.gateway, key);
    } catch (error) {
      // The run goes on (or has ended by itself): its stream still says how.
      dispatch({ type: "error", error, fatal: false });
    }
  }, [key]);

  return { ...state, start, cancel };
}
