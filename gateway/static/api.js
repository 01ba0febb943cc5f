// The gateway's JSON API as the page calls it: the API key (kept for this tab only) goes with
// every call, and a refusal becomes an ApiError carrying the gateway's {error, detail} body.

const KEY_ITEM = "agentstream:key";

/** The API key the user gave in this tab, or "". */
export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

/** Keep (or, with "", forget) the API key for this tab. */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(`${status} ${body.error}: ${body.detail || ""}`);
    this.status = status;
    this.code = body.error;
    this.detail = body.detail || "";
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** Call the gateway; the parsed JSON answer, or an ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload : { error: "http_" + response.status, detail: response.statusText };
    throw new ApiError(response.status, error, response.headers.get("Retry-After"));
  }
  return payload;
}

/** `url` (absolute, as the gateway hands it out) as a path on this page's origin: the page
 * always talks to the gateway that served it, whatever public URL that one is configured with. */
export function onThisOrigin(url) {
  const parsed = new URL(url, location.href);
  return parsed.pathname + parsed.search;
}
