/**
 * A streaming Server-Sent Events parser, after the WHATWG HTML standard's "event stream
 * interpretation": text goes in as it arrives, in pieces of any size; whole events come out.
 */

/** One dispatched event. */
export interface SseMessage {
  /** The `event:` field, `"message"` when absent. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The event's own `id:` field, null when it had none. */
  id: string | null;
}

/** Feeds decoded text in; collects events and the server's `retry:` hint. */
export class SseParser {
  /** The last `retry:` value (milliseconds), null until the server sends one. */
  retryMs: number | null = null;

  private buffer = "";
  private started = false;
  private event = "";
  private data: string[] = [];
  private id: string | null = null;

  /** Parse the next piece of the stream; returns the events it completed. */
  feed(text: string): SseMessage[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.buffer += text;
    const out: SseMessage[] = [];
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    for (;;) {
      eol.lastIndex = start;
      const found = eol.exec(this.buffer);
      if (found === null) break;
      // A lone CR at the end may be the first half of a CRLF still on its way.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, found.index);
      start = found.index + found[0].length;
      const message = this.line(line);
      if (message !== null) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
    }
    return null;
  }

  private dispatch(): SseMessage | null {
    const message =
      this.data.length > 0
        ? { event: this.event || "message", data: this.data.join("\n"), id: this.id }
        : null;
    this.event = "";
    this.data = [];
    this.id = null;
    return message;
  }
}
