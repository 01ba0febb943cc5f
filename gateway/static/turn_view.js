// One turn of the conversation on the page: the question, then the run as it streams in. The
// reply is a sequence of segments in the order the run produced them: text (Markdown, re-rendered
// as tokens arrive), tool steps (a SQL result shown as a table and a bar chart) and notices.

import { renderMarkdown } from "./markdown.js";
import { parseSqlResult, renderBarChart, renderTable } from "./sql_result.js";
import { verifyProof } from "./completeness.js";

const STAGES = {
  queued: "Queued",
  sandbox_creating: "Creating a sandbox",
  sandbox_ready: "Sandbox ready",
  waiting_for_agent: "Waiting for a free agent",
  agent_started: "Agent working",
  saving: "Saving the answer",
};
const LABELS = { running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled" };
const TERMINAL = new Set(["done", "failed", "cancelled"]);
// Text is re-rendered at most this often while tokens stream in.
const RENDER_EVERY_MS = 40;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function brief(value, length = 90) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > length ? line.slice(0, length - 1) + "…" : line;
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function seconds(ns) {
  return (ns / 1e9).toFixed(1) + " s";
}

export class TurnView {
  /** A turn for run `run` asked with `prompt`; `onCancel(run)` is called by its Cancel button. */
  constructor(run, prompt, onCancel) {
    this.run = run;
    this.status = "running";
    this.events = [];
    this.placeholder = false;
    this.root = el("article", "turn");
    this.root.dataset.run = run;
    this.root.dataset.events = "0";
    const question = el("div", "question");
    this.promptText = el("p", "", prompt);
    question.appendChild(this.promptText);
    const reply = el("div", "reply");
    const head = el("header", "reply-head");
    this.badge = el("span", "badge");
    this.stage = el("span", "stage");
    this.cancelButton = el("button", "cancel", "Cancel");
    this.cancelButton.type = "button";
    this.cancelButton.addEventListener("click", () => {
      this.cancelButton.disabled = true;
      this.cancelButton.textContent = "Cancelling…";
      onCancel(this.run);
    });
    head.append(this.badge, this.stage, el("span", "spacer"), this.cancelButton);
    this.body = el("div", "reply-body");
    this.foot = el("footer", "reply-foot");
    reply.append(head, this.body, this.foot);
    this.root.append(question, reply);
    this.clear();
  }

  /** A turn known only from the conversation's stored turns (its events are no longer kept,
   * or have not been streamed yet). */
  static fromStored(turn, onCancel) {
    const view = new TurnView(turn.run_id, turn.prompt, onCancel);
    view.placeholder = true;
    const status = turn.status === "completed" ? "done" : turn.status;
    if (turn.answer) view.text(turn.answer);
    view.flush();
    view.setStatus(status);
    if (status === "running") view.stage.textContent = "";
    return view;
  }

  /** Forget everything shown for the run (not the question): its stream follows from the start. */
  clear() {
    this.placeholder = false;
    this.events = [];
    this.body.replaceChildren();
    this.foot.replaceChildren();
    this.segment = null;
    this.tools = new Map();
    this.streamed = false;
    this.startedNs = 0;
    this.root.dataset.events = "0";
    this.setStatus("running");
    this.stage.textContent = "Starting…";
  }

  setPrompt(prompt) {
    if (prompt && !this.promptText.textContent) this.promptText.textContent = prompt;
  }

  setStatus(status) {
    this.status = status;
    this.root.dataset.status = status;
    this.badge.dataset.status = status;
    this.badge.textContent = LABELS[status] || status;
    this.cancelButton.hidden = status !== "running";
    if (status !== "running") this.stage.textContent = "";
  }

  /** Apply one event of the run (`data` parsed, `raw` as received, `id` its run event ID);
   * true when it ends the run. */
  apply(type, data, raw, id) {
    this.root.dataset.events = String(Number(this.root.dataset.events) + 1);
    if (!this.startedNs) this.startedNs = data.ts;
    if (TERMINAL.has(type)) {
      this.finish(type, data);
      return true;
    }
    this.events.push([id, raw]);
    switch (type) {
      case "status":
        this.stage.textContent = (STAGES[data.stage] || data.stage) + (data.model ? " · " + data.model : "");
        break;
      case "token":
        this.text(data.text);
        this.streamed = true;
        break;
      case "tool_start":
        this.toolStarted(data);
        break;
      case "tool_end":
        this.toolEnded(data);
        break;
      case "reset":
        // A retried attempt starts over: what the earlier attempts showed is dropped.
        this.body.replaceChildren();
        this.segment = null;
        this.tools = new Map();
        this.streamed = false;
        this.notice("warn", `Attempt ${data.attempt} started over${data.reason ? ": " + data.reason : ""}`);
        break;
      case "error":
        this.notice("warn", data.message);
        break;
    }
    return false;
  }

  text(delta) {
    if (!this.segment) {
      this.segment = { raw: "", node: el("div", "text markdown"), timer: 0 };
      this.body.appendChild(this.segment.node);
    }
    this.segment.raw += delta;
    if (!this.segment.timer) {
      const segment = this.segment;
      segment.timer = setTimeout(() => this.render(segment), RENDER_EVERY_MS);
    }
  }

  render(segment) {
    clearTimeout(segment.timer);
    segment.timer = 0;
    segment.node.replaceChildren(renderMarkdown(segment.raw));
    segment.node.dataset.chars = String(segment.raw.length);
  }

  /** Render the text that is still waiting for its timer. */
  flush() {
    if (this.segment && this.segment.timer) this.render(this.segment);
  }

  notice(kind, message) {
    this.flush();
    this.segment = null;
    this.body.appendChild(el("p", "notice " + kind, message));
  }

  toolStarted(data) {
    this.flush();
    this.segment = null;
    const step = el("div", "step");
    step.dataset.tool = data.name;
    const details = el("details", "tool");
    const summary = el("summary");
    const state = el("span", "tool-state", "running…");
    const input = data.name === "run_sql" && data.input.query ? data.input.query : data.input;
    summary.append(el("span", "tool-name", data.name), el("code", "tool-brief", brief(input)), state);
    const io = el("div", "tool-io");
    io.append(el("h4", "", "Input"), el("pre", "", typeof input === "string" ? input : JSON.stringify(input, null, 2)));
    details.append(summary, io);
    step.appendChild(details);
    this.body.appendChild(step);
    this.tools.set(data.call_id, { step, io, state, startedNs: data.ts });
  }

  toolEnded(data) {
    this.flush();
    let tool = this.tools.get(data.call_id);
    if (!tool) {
      this.toolStarted({ call_id: data.call_id, name: data.name, input: {}, ts: data.ts });
      tool = this.tools.get(data.call_id);
    }
    const took = Math.max(0, Math.round((data.ts - tool.startedNs) / 1e6));
    tool.state.textContent = data.error ? "failed" : `${took} ms`;
    tool.step.classList.toggle("failed", Boolean(data.error));
    tool.io.append(el("h4", "", data.error ? "Error" : "Output"), el("pre", "", pretty(data.error || data.output)));
    const result = data.name === "run_sql" && !data.error ? parseSqlResult(data.output) : null;
    if (result) tool.step.appendChild(this.figure(result));
  }

  figure(result) {
    const figure = el("figure", "sql-result");
    const chart = renderBarChart(result);
    const views = el("div", "sql-views");
    views.appendChild(renderTable(result));
    if (chart) views.appendChild(chart);
    figure.appendChild(views);
    const rows = result.rows.length;
    const caption = `${rows} row${rows === 1 ? "" : "s"}${result.truncated ? " (cut: " + (result.note || "more rows") + ")" : ""}`;
    figure.appendChild(el("figcaption", "", caption));
    return figure;
  }

  finish(type, data) {
    this.flush();
    this.segment = null;
    if (type === "done") {
      // The answer streamed in as tokens; only a run rebuilt from the database (its events
      // expired) brings it here alone.
      if (!this.streamed && data.result.final_answer) {
        this.text(data.result.final_answer);
        this.flush();
      }
    } else {
      this.notice(type === "failed" ? "error" : "warn", (type === "failed" ? "Failed" : "Cancelled") + (data.reason ? ": " + data.reason : ""));
    }
    this.setStatus(type);
    this.footer(type, data);
  }

  footer(type, data) {
    const parts = [];
    const result = type === "done" ? data.result : null;
    if (result && result.model) parts.push(result.model);
    if (result && result.sql_queries.length) {
      const n = result.sql_queries.length;
      parts.push(`${n} SQL quer${n === 1 ? "y" : "ies"}`);
    }
    if (this.startedNs && data.ts > this.startedNs) parts.push(seconds(data.ts - this.startedNs));
    this.foot.replaceChildren(el("span", "", parts.join(" · ")));
    const proof = data.completeness;
    if (!proof) return;
    const check = el("span", "proof", `${proof.events} events`);
    this.foot.appendChild(check);
    verifyProof(this.events, proof).then((ok) => {
      if (ok === null) return;
      check.textContent = ok ? `✓ all ${proof.events} events received` : `⚠ ${proof.events} events sent, ${this.events.length} received`;
      check.classList.add(ok ? "ok" : "bad");
      this.root.dataset.proof = ok ? "ok" : "mismatch";
    });
  }
}
