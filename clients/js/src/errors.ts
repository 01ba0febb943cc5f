/**
 * The errors this client throws, each its own class so callers can tell them apart with
 * `instanceof`.
 */

import type { CapacityRefusal, ErrorBody } from "./generated/schemas.js";

/** The `error` codes a gateway answers with; any other string may appear in a newer gateway. */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "too_many_requests"
  | "unavailable"
  | "bad_gateway"
  | "internal_error"
  | CapacityRefusal
  | (string & {});

/** The base class of every error this client throws. */
export class AgentstreamError extends Error {
  override name = "AgentstreamError";
}

/** A gateway answered with an error status and its JSON error body. */
export class ApiError extends AgentstreamError {
  override name = "ApiError";

  constructor(
    /** The HTTP status. */
    readonly status: number,
    /** The body's machine-readable `error` code. */
    readonly code: ErrorCode,
    /** The body's human-readable `detail`. */
    readonly detail: string,
    /** Seconds to wait before retrying, from `Retry-After` (429, 503), else null. */
    readonly retryAfterS: number | null = null,
  ) {
    super(`${status} ${code}${detail ? `: ${detail}` : ""}`);
  }

  /** Whether the same request may succeed later (a limit, or a backing service restarting). */
  get retryable(): boolean {
    return this.status === 429 || this.status >= 500;
  }

  /** Read an error response into an `ApiError` (a body that is not an `ErrorBody` is kept as detail). */
  static async from(response: Response): Promise<ApiError> {
    const text = await response.text();
    let body: Partial<ErrorBody> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === "object") body = parsed as Partial<ErrorBody>;
    } catch {
      // Not JSON (a proxy's HTML page, say): the text is all there is to say.
    }
    const code = typeof body.error === "string" ? body.error : `http_${response.status}`;
    const detail = typeof body.detail === "string" ? body.detail : text.slice(0, 500);
    return new ApiError(response.status, code, detail, retryAfter(response.headers));
  }
}

/** The events received do not match the completeness proof of the run's terminal event. */
export class CompletenessError extends AgentstreamError {
  override name = "CompletenessError";

  constructor(
    readonly run: string,
    /** What the terminal event says came before it. */
    readonly expected: { events: number; sha256: string },
    /** What this client received before it. */
    readonly received: { events: number; sha256: string },
  ) {
    super(
      `run ${run}: received ${received.events} events hashing to ${received.sha256}, ` +
        `but its terminal event counts ${expected.events} hashing to ${expected.sha256}`,
    );
  }
}

/** The stream broke more times in a row than allowed, or the server sent what cannot be read. */
export class StreamError extends AgentstreamError {
  override name = "StreamError";
}

/** Seconds from a `Retry-After` header in its delta-seconds form; null if absent or a date. */
export function retryAfter(headers: Headers): number | null {
  const value = headers.get("retry-after")?.trim();
  return value && /^\d+$/.test(value) ? Number(value) : null;
}
