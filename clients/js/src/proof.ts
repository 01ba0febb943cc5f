/**
 * The completeness proof, recomputed from what this client received (schemas/completeness.py):
 *
 *     h = 32 zero bytes
 *     for each event before the terminal one, in stream order:
 *         h = SHA-256(h || event ID as 8 bytes big-endian || data as UTF-8)
 *
 * and the terminal event's `completeness` must equal `{events: count, sha256: hex(h)}`.
 * SHA-256 comes from Web Crypto (`crypto.subtle`: browsers, Node 20+).
 */

import type { Completeness } from "./generated/schemas.js";

const encoder = new TextEncoder();

/** Where a proof stands after some events: enough to go on from there in another stream. */
export interface ProofState {
  /** How many events have been folded in. */
  events: number;
  /** The running hash, lowercase hex. */
  sha256: string;
}

/** Folds a run's events, in stream order, into its proof. */
export class CompletenessTally {
  private count: number;
  private digest: Uint8Array;

  constructor(from: ProofState = { events: 0, sha256: "0".repeat(64) }) {
    this.count = from.events;
    this.digest = fromHex(from.sha256);
  }

  /** Account for the next event: its SSE `id` and its `data` exactly as received. */
  async add(id: string, data: string): Promise<void> {
    const payload = encoder.encode(data);
    const input = new Uint8Array(32 + 8 + payload.length);
    input.set(this.digest, 0);
    new DataView(input.buffer).setBigUint64(32, BigInt(id), false);
    input.set(payload, 40);
    this.digest = new Uint8Array(await subtle().digest("SHA-256", input));
    this.count += 1;
  }

  /** The proof over every event added so far. */
  get state(): ProofState {
    return { events: this.count, sha256: toHex(this.digest) };
  }

  /** Whether `proof` is exactly what was received. */
  matches(proof: Completeness): boolean {
    const mine = this.state;
    return proof.events === mine.events && proof.sha256.toLowerCase() === mine.sha256;
  }
}

function subtle(): SubtleCrypto {
  const webCrypto = (globalThis as { crypto?: Crypto }).crypto;
  if (webCrypto?.subtle === undefined) {
    throw new Error(
      "Web Crypto (crypto.subtle) is unavailable: Node 20+ or a secure browser context is needed",
    );
  }
  return webCrypto.subtle;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`not a SHA-256 hex digest: ${hex}`);
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}
