// The README's completeness check, in the browser: the terminal event's proof recomputed from
// the events this page received, so the page can say it got every event of a run, once.

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `events` ([eventId, data] pairs: every event before the terminal one, in order)
 * match `proof` ({events, sha256}); null when it cannot be checked (no proof, or no Web Crypto,
 * which browsers offer only on https and localhost pages). */
export async function verifyProof(events, proof) {
  if (!proof || !globalThis.crypto || !crypto.subtle) return null;
  const encoder = new TextEncoder();
  let chain = new Uint8Array(32);
  for (const [id, data] of events) {
    const body = encoder.encode(data);
    const input = new Uint8Array(40 + body.length);
    input.set(chain, 0);
    new DataView(input.buffer).setBigUint64(32, BigInt(id));
    input.set(body, 40);
    chain = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  }
  return events.length === proof.events && hex(chain) === proof.sha256;
}
