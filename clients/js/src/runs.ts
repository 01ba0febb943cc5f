/** Starting, looking up and cancelling runs. */

import { callJson, gatewayOptions, runPath, type Gateway } from "./gateway.js";
import type { MessageAccepted, PostMessage, RunView } from "./generated/schemas.js";

export interface StartOptions {
  /** Names the run: a retry with the same key (and org) gets the same run, not a second one. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** `POST /api/messages`: queue a run for `message`; resolves once its stream exists. */
export async function startRun(
  gateway: Gateway,
  message: string | PostMessage,
  options: StartOptions = {},
): Promise<MessageAccepted> {
  const body: PostMessage = typeof message === "string" ? { message } : message;
  const headers: Record<string, string> =
    options.idempotencyKey === undefined ? {} : { "Idempotency-Key": options.idempotencyKey };
  return callJson<MessageAccepted>(gatewayOptions(gateway), "POST", "/api/messages", {
    body,
    headers,
    signal: options.signal,
  });
}

/** `GET /api/runs/{run}`: the run's status, and its result once stored. */
export async function getRun(
  gateway: Gateway,
  run: string,
  options: { signal?: AbortSignal } = {},
): Promise<RunView> {
  return callJson<RunView>(gatewayOptions(gateway), "GET", `/api/runs/${runPath(run)}`, {
    signal: options.signal,
  });
}

/** `POST /api/runs/{run}/cancel`: ask for the run to stop; its stream then ends `cancelled`
 * (or `done`, when its answer was already being saved). */
export async function cancelRun(
  gateway: Gateway,
  run: string,
  options: { signal?: AbortSignal } = {},
): Promise<RunView> {
  return callJson<RunView>(gatewayOptions(gateway), "POST", `/api/runs/${runPath(run)}/cancel`, {
    signal: options.signal,
  });
}
