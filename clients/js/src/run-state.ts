/**
 * A run as a page shows it, folded from its events by a plain reducer: what `useRun()` keeps,
 * usable without React (`followRun()` drives it from a stream).
 */

import type { AgentResult, MessageAccepted, Stage } from "./generated/schemas.js";
import type { Gateway } from "./gateway.js";
import {
  streamRun,
  type Checkpoint,
  type ProofStatus,
  type StreamedEvent,
  type StreamOptions,
} from "./stream.js";

/** One tool call of the current attempt. */
export interface ToolActivity {
  callId: string;
  name: string;
  input: { [key: string]: unknown };
  /** Null while the call runs. */
  output: string | null;
  error: string | null;
}

export type RunPhase =
  "idle" | "starting" | "streaming" | "done" | "failed" | "cancelled" | "error";

export interface RunState {
  /** `idle` before anything, `starting` while the message is posted, `streaming` until the
   * terminal event, then how the run ended; `error` when the client gave up (see `error`). */
  phase: RunPhase;
  run: string | null;
  stage: Stage | null;
  /** The attempt the text and tools belong to; a `reset` starts the next one afresh. */
  attempt: number;
  /** The assistant's text of this attempt so far; once `done`, the final answer. */
  text: string;
  tools: ToolActivity[];
  /** Non-fatal `error` events, in order. */
  notices: string[];
  result: AgentResult | null;
  /** Why the run failed or was cancelled. */
  reason: string | null;
  proof: ProofStatus;
  /** Where to resume after a reload (see `StreamOptions.resume`). */
  checkpoint: Checkpoint | null;
  /** What the client last threw: an `ApiError`, `CompletenessError`, `StreamError`. */
  error: unknown;
}

export type RunAction =
  | { type: "start" }
  | { type: "follow"; run: string }
  | {
      type: "event";
      run: string;
      received: StreamedEvent;
      proof: ProofStatus;
      checkpoint: Checkpoint | null;
    }
  /** `fatal`: the client gave up on the run (phase `error`); else only worth showing. */
  | { type: "error"; error: unknown; fatal: boolean };

export const initialRunState: RunState = {
  phase: "idle",
  run: null,
  stage: null,
  attempt: 1,
  text: "",
  tools: [],
  notices: [],
  result: null,
  reason: null,
  proof: "pending",
  checkpoint: null,
  error: null,
};

/** The next state after `action`. */
export function runReducer(state: RunState, action: RunAction): RunState {
  switch (action.type) {
    case "start":
      return { ...initialRunState, phase: "starting" };
    case "follow":
      // A stream starts from the run's first event: whatever an earlier one folded goes (React's
      // StrictMode mounts an effect twice, so the same run may be followed afresh).
      return { ...initialRunState, phase: "streaming", run: action.run };
    case "error":
      return { ...state, phase: action.fatal ? "error" : state.phase, error: action.error };
    case "event":
      // A stream being closed may still deliver an event of the run it followed.
      if (action.run !== state.run) return state;
      return {
        ...applyEvent(state, action.received),
        proof: action.proof,
        checkpoint: action.checkpoint,
      };
  }
}

function applyEvent(state: RunState, { event }: StreamedEvent): RunState {
  switch (event.type) {
    case "status":
      return { ...state, stage: event.stage };
    case "token":
      return { ...state, text: state.text + event.text };
    case "tool_start":
      return {
        ...state,
        tools: [
          ...state.tools,
          {
            callId: event.call_id,
            name: event.name,
            input: event.input ?? {},
            output: null,
            error: null,
          },
        ],
      };
    case "tool_end":
      return {
        ...state,
        tools: state.tools.map((tool) =>
          tool.callId === event.call_id
            ? { ...tool, output: event.output ?? "", error: event.error ?? null }
            : tool,
        ),
      };
    case "reset":
      // A retried attempt streams its output again from the start.
      return { ...state, attempt: event.attempt ?? state.attempt + 1, text: "", tools: [] };
    case "error":
      return { ...state, notices: [...state.notices, event.message] };
    case "done":
      return {
        ...state,
        phase: "done",
        result: event.result,
        text: event.result.final_answer || state.text,
      };
    case "failed":
      return { ...state, phase: "failed", reason: event.reason };
    case "cancelled":
      return { ...state, phase: "cancelled", reason: event.reason ?? "" };
  }
}

/** Stream `run` into `dispatch` until it ends (or `options.signal` stops it); errors are
 * dispatched, not thrown, except the signal's own abort. */
export async function followRun(
  gateway: Gateway,
  run: string | MessageAccepted,
  dispatch: (action: RunAction) => void,
  options: StreamOptions = {},
): Promise<void> {
  const stream = streamRun(gateway, run, options);
  dispatch({ type: "follow", run: stream.run });
  try {
    for await (const received of stream) {
      // Stopped (a React effect cleaned up): its successor owns the state now.
      if (options.signal?.aborted) return;
      dispatch({
        type: "event",
        run: stream.run,
        received,
        proof: stream.proof,
        checkpoint: stream.checkpoint,
      });
    }
  } catch (error) {
    if (options.signal?.aborted) return;
    dispatch({ type: "error", error, fatal: true });
  }
}
