// The page: one conversation (its ID in the URL, ?c=…), asked question after question, followed
// on the conversation's one stream (GET /api/conversations/{id}/stream).
//
// Resuming. Every event the stream delivered is kept in sessionStorage with its ID; a reload
// redraws the conversation from them and reopens the stream after the last one, so the server
// sends only what the page has not seen. EventSource itself resends Last-Event-ID after a
// dropped connection, and the page also ignores any event whose ID is not past the last one,
// so no event is ever applied twice. Without the stored events (another tab, storage full) the
// stream is read from the conversation's start and redraws everything once.

import { api, ApiError, apiKey, onThisOrigin, setApiKey } from "./api.js";
import { TurnView } from "./turn_view.js";

const EVENT_TYPES = ["run", "status", "token", "tool_start", "tool_end", "reset", "error", "done", "failed", "cancelled"];
const RECENT_ITEM = "agentstream:conversations";
const RECENT_KEEP = 15;
const SAVE_EVERY_MS = 200;
const REOPEN_AFTER_MS = 1000;

const params = new URLSearchParams(location.search);
const org = params.get("org") || "";
let conversation = params.get("c") || "";

const $ = (id) => document.getElementById(id);
const turnsEl = $("turns");
const form = $("ask");
const input = $("message");
const send = $("send");
const notice = $("notice");
const connection = $("connection");

const turns = new Map();
let source = null;
let lastId = null;
let stored = { events: [] };
let saveTimer = 0;
// The conversation could not be read without an API key: read it once one is given.
let loadRefused = false;

// --- Helpers -------------------------------------------------------------------------------

function withOrg(path) {
  if (!org) return path;
  return path + (path.includes("?") ? "&" : "?") + "org=" + encodeURIComponent(org);
}

function say(text, kind = "") {
  notice.textContent = text;
  notice.className = "notice-line " + kind;
}

function explain(error) {
  if (!(error instanceof ApiError)) return "Could not reach the gateway: " + error.message;
  if (error.status === 401) {
    showKeyPanel(true);
    return "The gateway needs an API key: enter one on the right.";
  }
  if (error.code === "conversation_busy") return "The previous question is still being answered: wait for it or cancel it.";
  const retry = error.retryAfter ? ` (retry in ${error.retryAfter} s)` : "";
  return `${error.detail || error.code}${retry}`;
}

function newConversationId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "c_" + Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 20);
}

function pageUrl(id) {
  const next = new URLSearchParams();
  if (id) next.set("c", id);
  if (org) next.set("org", org);
  const query = next.toString();
  return location.pathname + (query ? "?" + query : "");
}

/** Conversation event IDs are "<record>-<event>"; compared as number pairs. */
function after(id, than) {
  const [a, b] = id.split("-").map(Number);
  const [c, d] = than.split("-").map(Number);
  return a > c || (a === c && b > d);
}

// --- Stored events --------------------------------------------------------------------------

function storageKey() {
  return `agentstream:stream:${org}:${conversation}`;
}

function loadStored() {
  try {
    const value = JSON.parse(sessionStorage.getItem(storageKey()) || "null");
    if (value && Array.isArray(value.events)) return value;
  } catch {
    // Unreadable: read the stream from the start instead.
  }
  return { events: [] };
}

function saveStored() {
  clearTimeout(saveTimer);
  saveTimer = 0;
  if (!conversation) return;
  try {
    sessionStorage.setItem(storageKey(), JSON.stringify(stored));
  } catch {
    // Storage full: a reload then reads the stream from the start, which is only slower.
    sessionStorage.removeItem(storageKey());
  }
}

function remember(prompt) {
  let recent = [];
  try {
    recent = JSON.parse(localStorage.getItem(RECENT_ITEM) || "[]");
  } catch {
    recent = [];
  }
  if (!recent.some((c) => c.id === conversation && c.org === org)) {
    recent.unshift({ id: conversation, org, prompt, ts: Date.now() });
    localStorage.setItem(RECENT_ITEM, JSON.stringify(recent.slice(0, RECENT_KEEP)));
  }
  showConversations();
}

// --- Turns ----------------------------------------------------------------------------------

function cancelRun(run) {
  api("POST", `/api/runs/${encodeURIComponent(run)}/cancel`).catch((error) => {
    // 409: it had already finished; its end is on the stream.
    if (!(error instanceof ApiError && error.status === 409)) say(explain(error), "error");
  });
}

function turnFor(run, prompt) {
  let turn = turns.get(run);
  if (!turn) {
    turn = new TurnView(run, prompt, cancelRun);
    turns.set(run, turn);
    turnsEl.appendChild(turn.root);
    $("empty").hidden = true;
  }
  return turn;
}

function updateComposer() {
  const busy = [...turns.values()].some((t) => t.status === "running" && !t.placeholder);
  send.disabled = busy;
  send.textContent = busy ? "Answering…" : "Ask";
}

function nearBottom() {
  return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
}

/** Apply one stream event: `id` its conversation event ID, `raw` its data as received. */
function apply(id, type, raw) {
  const follow = nearBottom();
  const data = JSON.parse(raw);
  if (type === "run") {
    const turn = turnFor(data.run, data.prompt);
    turn.setPrompt(data.prompt);
    if (turn.placeholder) turn.clear();
    refreshRuns();
  } else {
    const turn = turnFor(data.run, "");
    if (turn.placeholder) turn.clear();
    const ended = turn.apply(type, data, raw, id.split("-")[1]);
    if (ended) refreshRuns();
  }
  updateComposer();
  if (follow) window.scrollTo(0, document.body.scrollHeight);
}

function received(message) {
  const id = message.lastEventId;
  if (!id || (lastId && !after(id, lastId))) return;
  lastId = id;
  stored.events.push([id, message.type, message.data]);
  if (!saveTimer) saveTimer = setTimeout(saveStored, SAVE_EVERY_MS);
  apply(id, message.type, message.data);
}

// --- The stream -----------------------------------------------------------------------------

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

function openStream(url) {
  if (source) source.close();
  const path = onThisOrigin(url) + (lastId ? "&last_event_id=" + encodeURIComponent(lastId) : "");
  source = new EventSource(path);
  setConnection("connecting", "connecting…");
  source.onopen = () => setConnection("live", "live");
  for (const type of EVENT_TYPES) source.addEventListener(type, received);
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      setConnection("connecting", "reconnecting…");
      return;
    }
    // Refused (an expired token, a restart): a fresh token, then on from the last event.
    setConnection("offline", "offline");
    source = null;
    setTimeout(reopen, REOPEN_AFTER_MS);
  };
}

async function reopen() {
  if (source) return;
  try {
    const access = await api("POST", withOrg(`/api/conversations/${conversation}/stream-token`));
    openStream(access.stream_url);
  } catch (error) {
    say(explain(error), "error");
    setTimeout(reopen, REOPEN_AFTER_MS * 5);
  }
}

// --- Loading a conversation ---------------------------------------------------------------

async function loadConversation() {
  stored = loadStored();
  let view = null;
  try {
    view = await api("GET", withOrg(`/api/conversations/${conversation}`));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      loadRefused = error instanceof ApiError && error.status === 401;
      say(explain(error), "error");
      return;
    }
  }
  // Turns whose events are no longer kept show as stored; the stream redraws the others.
  for (const turn of view ? view.turns : []) {
    const shown = TurnView.fromStored(turn, cancelRun);
    turns.set(turn.run_id, shown);
    turnsEl.appendChild(shown.root);
  }
  $("empty").hidden = turns.size > 0;
  for (const [id, type, raw] of stored.events) {
    lastId = id;
    apply(id, type, raw);
  }
  if (view) {
    openStream(view.stream_url);
    refreshRuns();
  }
  updateComposer();
}

// --- Asking -----------------------------------------------------------------------------------

async function ask(message) {
  if (!conversation) {
    conversation = newConversationId();
    history.replaceState(null, "", pageUrl(conversation));
    stored = { events: [] };
  }
  send.disabled = true;
  say("");
  try {
    const body = { message, conversation_id: conversation };
    if (org) body.org = org;
    const accepted = await api("POST", "/api/messages", body);
    input.value = "";
    turnFor(accepted.workflow_id, message);
    remember(turns.size === 1 ? message : "");
    if (!source) openStream(accepted.conversation_stream_url);
    refreshRuns();
  } catch (error) {
    say(explain(error), "error");
  }
  updateComposer();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const message = input.value.trim();
  if (message && !send.disabled) ask(message);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

for (const chip of document.querySelectorAll(".example")) {
  chip.addEventListener("click", () => {
    input.value = chip.textContent;
    input.focus();
  });
}

$("new-conversation").addEventListener("click", () => {
  location.href = pageUrl("");
});

// --- The side panel: runs, conversations, API key -------------------------------------------

function ago(seconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(seconds * 1000).toLocaleString();
}

let refreshing = null;
function refreshRuns() {
  if (!conversation) return;
  // One listing at a time; a request made meanwhile is served by one more after it.
  if (refreshing) {
    refreshing.again = true;
    return;
  }
  refreshing = { again: false };
  api("GET", withOrg(`/api/runs?conversation_id=${conversation}&limit=10`))
    .then(showRuns, () => {})
    .finally(() => {
      const again = refreshing.again;
      refreshing = null;
      if (again) refreshRuns();
    });
}

function showRuns(list) {
  const items = list.runs.map((run) => {
    const li = document.createElement("li");
    li.className = "run-item";
    li.dataset.run = run.run_id;
    const turn = turns.get(run.run_id);
    // The stream is fresher than the listing for the runs it carried.
    const status = turn && !turn.placeholder ? turn.status : run.status === "completed" ? "done" : run.status;
    li.dataset.status = status;
    const link = document.createElement("button");
    link.type = "button";
    link.className = "run-link";
    link.textContent = run.prompt;
    link.title = run.run_id;
    link.addEventListener("click", () => turns.get(run.run_id)?.root.scrollIntoView({ behavior: "smooth" }));
    const meta = document.createElement("span");
    meta.className = "run-meta";
    meta.textContent = `${status} · ${ago(run.ts)}`;
    li.append(link, meta);
    if (status === "running") {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "cancel small";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => {
        cancel.disabled = true;
        cancelRun(run.run_id);
      });
      li.appendChild(cancel);
    }
    return li;
  });
  $("runs").replaceChildren(...items);
  $("runs-empty").hidden = items.length > 0;
}

function showConversations() {
  let recent = [];
  try {
    recent = JSON.parse(localStorage.getItem(RECENT_ITEM) || "[]");
  } catch {
    recent = [];
  }
  const items = recent.map((c) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    const query = new URLSearchParams({ c: c.id });
    if (c.org) query.set("org", c.org);
    a.href = "?" + query.toString();
    a.textContent = c.prompt || c.id;
    if (c.id === conversation && c.org === org) a.className = "current";
    li.appendChild(a);
    return li;
  });
  $("conversations").replaceChildren(...items);
  $("conversations-panel").hidden = items.length === 0;
}

function showKeyPanel(required) {
  const panel = $("key-panel");
  panel.hidden = false;
  panel.classList.toggle("required", required && !apiKey());
  $("key-state").textContent = apiKey() ? "A key is set for this tab." : required ? "This gateway requires an API key." : "";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey($("key").value.trim());
  $("key").value = "";
  showKeyPanel(true);
  say("");
  if (loadRefused) {
    loadRefused = false;
    loadConversation();
  }
});

async function start() {
  showConversations();
  try {
    const health = await api("GET", "/healthz");
    if (health.auth === "required") showKeyPanel(true);
  } catch (error) {
    say(explain(error), "error");
  }
  if (conversation) await loadConversation();
  else updateComposer();
  input.focus();
}

window.addEventListener("pagehide", saveStored);
start();
