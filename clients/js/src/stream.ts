/**
 * `streamRun()`: every event of a run, in order, once, as an async iterator. When the connection
 * drops it reconnects by itself with `Last-Event-ID`; when the run ends it checks the terminal
 * event's completeness proof against what it received, and throws `CompletenessError` instead of
 * yielding a terminal event the events do not add up to.
 */

import { AgentstreamError, ApiError, CompletenessError, StreamError } from "./errors.js";
import {
  gatewayHeaders,
  gatewayOptions,
  gatewayUrl,
  runPath,
  type Gateway,
  type GatewayOptions,
} from "./gateway.js";
import {
  TERMINAL_EVENT_TYPES,
  type MessageAccepted,
  type RunEvent,
  type TerminalEvent,
} from "./generated/schemas.js";
import { CompletenessTally, type ProofState } from "./proof.js";
import { SseParser, type SseMessage } from "./sse.js";

/** One event as received. */
export interface StreamedEvent {
  /** Its event ID (the SSE `id:`), null only for a `done` rebuilt after the run's events expired. */
  id: string | null;
  /** The event, decoded. */
  event: RunEvent;
  /** Its JSON exactly as received (what the proof hashes). */
  data: string;
}

/** Where to pick a run's stream up again, e.g. after a page reload: `RunStream.checkpoint`. */
export interface Checkpoint extends ProofState {
  /** The ID of the last event received. */
  lastEventId: string;
}

/** How far the proof got: checked and right, or not offered by the server (see below). */
export type ProofStatus = "pending" | "verified" | "unavailable";

export interface StreamOptions {
  /** The run's stream token (`MessageAccepted.stream_token`); given a `MessageAccepted`, its own.
   * Not needed when the gateway options carry the org's credentials; with both, a token that
   * expired (401) is dropped and the stream goes on with the credentials. */
  streamToken?: string;
  /** Go on after a checkpoint of an earlier stream of the same run (the proof goes on too). */
  resume?: Checkpoint;
  /** Stops the stream: iteration then throws the signal's reason. */
  signal?: AbortSignal;
  /** How many reconnects in a row, with no event received between them, before giving up
   * with a `StreamError`. Default 20. */
  maxReconnects?: number;
  /** The longest pause before a reconnect, in ms (the server's `retry:` hint lowers it).
   * Default 2000. */
  maxBackoffMs?: number;
  /** How long a connection may stay silent, in ms, before it is taken for dead and replaced;
   * the gateway sends a keepalive comment every 15 s by default. Default 45000. */
  idleTimeoutMs?: number;
  /** Told of every reconnect, with what broke the connection. */
  onReconnect?: (info: ReconnectInfo) => void;
}

export interface ReconnectInfo {
  /** Reconnects in a row so far, this one included. */
  attempt: number;
  /** Where the stream resumes; null: from the start. */
  lastEventId: string | null;
  /** What ended the previous connection. */
  cause: unknown;
}

const TERMINAL: ReadonlySet<string> = new Set(TERMINAL_EVENT_TYPES);
const DEFAULT_MAX_RECONNECTS = 20;
const DEFAULT_MAX_BACKOFF_MS = 2000;
const BACKOFF_STEP_MS = 200;
const DEFAULT_IDLE_TIMEOUT_MS = 45_000;
const MAX_RETRY_AFTER_MS = 60_000;

/** Follow `run` (its ID, or `startRun()`'s answer) on `gateway` to its terminal event. */
export function streamRun(
  gateway: Gateway,
  run: string | MessageAccepted,
  options: StreamOptions = {},
): RunStream {
  if (typeof run === "string") return new RunStream(gateway, run, options);
  const streamToken = options.streamToken ?? (run.stream_token || undefined);
  return new RunStream(gateway, run.workflow_id, {
    ...options,
    ...(streamToken === undefined ? {} : { streamToken }),
  });
}

/** A run's stream: iterate it once with `for await`; its fields tell how it went. */
export class RunStream implements AsyncIterable<StreamedEvent> {
  /** The ID of the last event received, where a reconnect resumes. */
  lastEventId: string | null;
  /** How many times the stream reconnected. */
  reconnects = 0;
  /** `verified` once the terminal event's proof matched; `unavailable` for a `done` the
   * gateway rebuilt from its database after the run's events expired (it carries no proof). */
  proof: ProofStatus = "pending";
  /** The run's terminal event, once received (and its proof checked). */
  terminal: TerminalEvent | null = null;

  private readonly gateway: GatewayOptions;
  private readonly tally: CompletenessTally;
  private retryMs: number | null = null;
  private iterated = false;
  private streamToken: string | undefined;

  constructor(
    gateway: Gateway,
    readonly run: string,
    private readonly options: StreamOptions = {},
  ) {
    this.gateway = gatewayOptions(gateway);
    this.lastEventId = options.resume?.lastEventId ?? null;
    this.tally = new CompletenessTally(options.resume);
    this.streamToken = options.streamToken;
  }

  /** Where this stream stands: pass it as `resume` to go on in another stream later. */
  get checkpoint(): Checkpoint | null {
    return this.lastEventId === null
      ? null
      : { lastEventId: this.lastEventId, ...this.tally.state };
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamedEvent> {
    if (this.iterated) throw new StreamError("a RunStream can be iterated only once");
    this.iterated = true;
    return this.events();
  }

  private async *events(): AsyncGenerator<StreamedEvent, void, undefined> {
    const signal = this.options.signal;
    const maxReconnects = this.options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
    let failures = 0;
    for (;;) {
      signal?.throwIfAborted();
      const connection = new AbortController();
      const abort = () => connection.abort(signal?.reason);
      signal?.addEventListener("abort", abort);
      let cause: unknown;
      try {
        const response = await this.open(connection.signal);
        if (response.ok) {
          for await (const received of this.read(response, connection)) {
            failures = 0;
            yield received;
            if (this.terminal !== null) return;
          }
          cause = new StreamError(`the stream of ${this.run} ended before its terminal event`);
        } else {
          const error = await ApiError.from(response);
          if (this.expiredToken(error)) {
            this.streamToken = undefined;
          } else if (!error.retryable) {
            // A replica whose backing services restart answers 503: try again. 4xx is final.
            throw error;
          }
          cause = error;
        }
      } catch (error) {
        signal?.throwIfAborted();
        if (error instanceof AgentstreamError) throw error;
        // Anything else is the network's: a refused connection, a cut one.
        cause = error;
      } finally {
        signal?.removeEventListener("abort", abort);
        // Closes the connection, also when the consumer leaves the loop early.
        connection.abort();
      }
      failures += 1;
      if (failures > maxReconnects) {
        throw new StreamError(`the stream of ${this.run} broke ${failures} times in a row`, {
          cause,
        });
      }
      this.reconnects += 1;
      this.options.onReconnect?.({ attempt: failures, lastEventId: this.lastEventId, cause });
      await sleep(this.backoffMs(failures, cause), signal);
    }
  }

  /** A refused stream token (they expire) when the gateway options hold credentials too. */
  private expiredToken(error: ApiError): boolean {
    return (
      error.status === 401 && this.streamToken !== undefined && this.gateway.token !== undefined
    );
  }

  private open(signal: AbortSignal): Promise<Response> {
    const token = this.streamToken;
    const query = token === undefined ? "" : `?token=${encodeURIComponent(token)}`;
    const extra: Record<string, string> = { Accept: "text/event-stream" };
    if (this.lastEventId !== null) extra["Last-Event-ID"] = this.lastEventId;
    const fetcher = this.gateway.fetch ?? globalThis.fetch;
    return fetcher(gatewayUrl(this.gateway, `/api/stream/${runPath(this.run)}${query}`), {
      headers: gatewayHeaders(this.gateway, extra),
      cache: "no-store",
      signal,
    });
  }

  /** The events of one connection not received before, proof-checked at the terminal one. */
  private async *read(
    response: Response,
    connection: AbortController,
  ): AsyncGenerator<StreamedEvent, void, undefined> {
    const type = response.headers.get("content-type") ?? "";
    if (!type.startsWith("text/event-stream") || response.body === null) {
      throw new StreamError(`the stream of ${this.run} answered ${type || "no content type"}`);
    }
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    const idleMs = this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    // A half-open connection (a sleeping laptop, a proxy that lost it) would otherwise wait forever.
    const silent = () =>
      connection.abort(new Error(`the stream of ${this.run} was silent for ${idleMs} ms`));
    let idle: ReturnType<typeof setTimeout> | undefined;
    try {
      for (;;) {
        // Counted only while waiting on the network, not while the consumer holds an event.
        idle = setTimeout(silent, idleMs);
        const { done, value } = await reader.read();
        clearTimeout(idle);
        if (done) return;
        const messages = parser.feed(decoder.decode(value, { stream: true }));
        this.retryMs = parser.retryMs ?? this.retryMs;
        for (const message of messages) {
          const received = await this.accept(message);
          if (received === null) continue;
          yield received;
          if (this.terminal !== null) return;
        }
      }
    } finally {
      clearTimeout(idle);
      reader.releaseLock();
    }
  }

  /** Account for one message: null for one already received. */
  private async accept(message: SseMessage): Promise<StreamedEvent | null> {
    const { id, data } = message;
    if (id !== null) {
      if (!/^\d+$/.test(id))
        throw new StreamError(`event ID ${JSON.stringify(id)} of ${this.run} is not a number`);
      // IDs only grow: one not above the last was received on an earlier connection.
      if (this.lastEventId !== null && BigInt(id) <= BigInt(this.lastEventId)) return null;
    }
    const event = decodeEvent(this.run, message);
    if (TERMINAL.has(event.type)) {
      this.check(event as TerminalEvent);
    } else if (id !== null) {
      await this.tally.add(id, data);
    }
    if (id !== null) this.lastEventId = id;
    return { id, event, data };
  }

  private check(event: TerminalEvent): void {
    const proof = event.completeness;
    if (proof === null || proof === undefined) {
      this.proof = "unavailable";
    } else if (this.tally.matches(proof)) {
      this.proof = "verified";
    } else {
      throw new CompletenessError(this.run, proof, this.tally.state);
    }
    this.terminal = event;
  }

  private backoffMs(failures: number, cause: unknown): number {
    const cap = Math.min(
      this.options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
      this.retryMs ?? Infinity,
    );
    const pause = Math.min(BACKOFF_STEP_MS * failures, cap);
    // A refusal that says when to come back (429, 503) is believed, up to a minute: coming
    // back sooner would only be refused again.
    const asked =
      cause instanceof ApiError && cause.retryAfterS !== null ? cause.retryAfterS * 1000 : 0;
    return Math.max(pause, Math.min(asked, MAX_RETRY_AFTER_MS));
  }
}

function decodeEvent(run: string, message: SseMessage): RunEvent {
  let event: unknown;
  try {
    event = JSON.parse(message.data);
  } catch (error) {
    throw new StreamError(`event ${message.id ?? "without ID"} of ${run} is not JSON`, {
      cause: error,
    });
  }
  if (
    event === null ||
    typeof event !== "object" ||
    typeof (event as { type?: unknown }).type !== "string"
  ) {
    throw new StreamError(`event ${message.id ?? "without ID"} of ${run} has no type`);
  }
  return event as RunEvent;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
}
