/** Where a gateway is and how to call it. */

import { ApiError } from "./errors.js";

/** A gateway: its base URL, or the URL with credentials and a `fetch` of your own. */
export type Gateway = string | GatewayOptions;

export interface GatewayOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8000` (any replica, or a load balancer). */
  url: string;
  /** An API key or JWT, sent as `Authorization: Bearer`; omit for an open (local) gateway. */
  token?: string;
  /** More headers for every request. */
  headers?: Record<string, string>;
  /** The `fetch` to use; `globalThis.fetch` by default. */
  fetch?: typeof fetch;
}

/** A gateway's options with a string expanded. */
export function gatewayOptions(gateway: Gateway): GatewayOptions {
  return typeof gateway === "string" ? { url: gateway } : gateway;
}

/** The absolute URL of `path` (which starts with `/`) on the gateway. */
export function gatewayUrl(gateway: GatewayOptions, path: string): string {
  return gateway.url.replace(/\/+$/, "") + path;
}

/** The headers every request to the gateway carries, plus `extra`. */
export function gatewayHeaders(
  gateway: GatewayOptions,
  extra: Record<string, string> = {},
): Record<string, string> {
  const headers: Record<string, string> = { ...gateway.headers, ...extra };
  if (gateway.token !== undefined) headers["Authorization"] = `Bearer ${gateway.token}`;
  return headers;
}

/** Call the gateway and decode its JSON answer; any error status is thrown as an `ApiError`. */
export async function callJson<T>(
  gateway: GatewayOptions,
  method: "GET" | "POST",
  path: string,
  init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal | undefined } = {},
): Promise<T> {
  const request: RequestInit = {
    method,
    headers: gatewayHeaders(gateway, {
      Accept: "application/json",
      ...(init.body === undefined ? {} : { "Content-Type": "application/json" }),
      ...init.headers,
    }),
  };
  if (init.body !== undefined) request.body = JSON.stringify(init.body);
  if (init.signal !== undefined) request.signal = init.signal;
  const response = await (gateway.fetch ?? globalThis.fetch)(gatewayUrl(gateway, path), request);
  if (!response.ok) throw await ApiError.from(response);
  return (await response.json()) as T;
}

/** A run ID as a path segment (IDs are `[A-Za-z0-9_-]`; anything else is the gateway's to refuse). */
export function runPath(run: string): string {
  return encodeURIComponent(run);
}
