// The teacher's console: the class table (polled every 2 s), transcripts and actions.
// Plain DOM, no build step. Text from students only ever goes in through textContent.
"use strict";

const POLL_MS = 2000;
const API = "/teacher/api";
const rows = new Map();          // label -> {tr, cells, budgetInput}
let selected = null;             // the label whose conversations are shown
let transcriptsShownAt = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const fmt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
// USD at the models' standard prices; a few tokens cost fractions of a cent, so those keep 2 digits
const money = (c) => (c === null || c === undefined ? "—" : c >= 0.01 ? `$${c.toFixed(2)}`
                      : c > 0 ? `$${c.toPrecision(2)}` : "$0");

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, init);
  if (r.status === 401) { location.reload(); throw new Error("logged out"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message || "";
  p.hidden = !message;
}

// -- the class table --------------------------------------------------------------------
function makeRow(label) {
  const cells = {};
  const names = ["student", "status", "requests", "tokens", "cost", "meter", "left", "rate",
                 "last", "budget", "actions"];
  const tr = el("tr", { "data-label": label });
  for (const name of names) {
    const num = ["requests", "tokens", "cost", "left", "rate"].includes(name);
    cells[name] = el("td", { class: num ? `num col-${name}` : `col-${name}` });
    tr.append(cells[name]);
  }
  const budgetInput = el("input", { class: "budget", type: "number", min: "0", step: "1",
                                    "aria-label": `token budget of ${label}` });
  const setButton = el("button", { type: "button", class: "secondary",
                                   onclick: () => setBudget(label, budgetInput) }, "Set");
  budgetInput.addEventListener("keydown", (e) => { if (e.key === "Enter") setBudget(label, budgetInput); });
  cells.budget.append(el("span", { class: "actions" }, budgetInput, setButton));
  const toggle = el("button", { type: "button", class: "danger" }, "Disable");
  toggle.addEventListener("click", () => toggleKey(label, toggle));
  const view = el("button", { type: "button", class: "secondary",
                              onclick: () => openTranscripts(label) }, "Conversations");
  cells.actions.append(el("span", { class: "actions" }, view, toggle));
  return { tr, cells, budgetInput, toggle };
}

function fill(row, s) {
  const c = row.cells;
  c.student.replaceChildren(el("b", {}, s.label), el("span", { class: "fp", title: "key fingerprint" }, s.fingerprint));
  const state = s.disabled ? "off" : s.answering ? "answering" : "idle";
  const words = s.disabled ? "disabled" : s.answering ? "answering now" : "idle";
  c.status.replaceChildren(el("span", { class: `status ${state}` }, el("i", { class: "dot" }), words));
  c.requests.textContent = fmt(s.requests);
  c.tokens.textContent = fmt(s.tokens);
  const unpriced = s.unpriced_tokens ? `${fmt(s.unpriced_tokens)} tokens unpriced` : "";
  c.cost.textContent = s.cost === null && unpriced ? unpriced : money(s.cost) + (unpriced ? ` + ${unpriced}` : "");
  c.cost.title = s.unpriced_tokens ? "tokens of models with no known price are not in the cost" : "";
  if (s.token_budget === null) {
    c.meter.replaceChildren(el("span", { class: "muted" }, "no budget"));
  } else {
    const part = s.token_budget ? Math.min(1, s.tokens / s.token_budget) : 1;
    const bar = el("span", { class: part >= 1 ? "meter full" : "meter" }, el("i", {}));
    bar.firstChild.style.width = `${Math.round(part * 100)}%`;
    c.meter.replaceChildren(bar, `${fmt(s.tokens)} / ${fmt(s.token_budget)}`);
  }
  c.left.textContent = fmt(s.budget_left);
  c.rate.textContent = s.rate_limit ? `${s.rate} / ${s.rate_limit} per min` : `${s.rate} per min`;
  c.last.textContent = ago(s.last_active);
  c.last.title = s.last_active || "";
  if (document.activeElement !== row.budgetInput) {
    row.budgetInput.placeholder = s.token_budget === null ? "unlimited" : String(s.token_budget);
  }
  row.toggle.textContent = s.disabled ? "Enable" : "Disable";
  row.toggle.className = s.disabled ? "secondary" : "danger";
  row.disabled = s.disabled;
  row.tr.classList.toggle("disabled", s.disabled);
  row.tr.classList.toggle("selected", s.label === selected);
}

function render(data) {
  const tbody = document.querySelector("#class tbody");
  const seen = new Set();
  for (const s of data.students) {
    seen.add(s.label);
    let row = rows.get(s.label);
    if (!row) { row = makeRow(s.label); rows.set(s.label, row); tbody.append(row.tr); }
    fill(row, s);
  }
  for (const [label, row] of rows) if (!seen.has(label)) { row.tr.remove(); rows.delete(label); }
  const t = data.students.reduce((a, s) => ({ tokens: a.tokens + s.tokens, requests: a.requests + s.requests,
                                              answering: a.answering + (s.answering ? 1 : 0),
                                              cost: s.cost === null ? a.cost : (a.cost || 0) + s.cost }),
                                 { tokens: 0, requests: 0, answering: 0, cost: null });
  const card = (value, what) => el("div", { class: "card" }, el("b", {}, value), el("span", {}, what));
  document.getElementById("summary").replaceChildren(
    card(fmt(data.students.length), "students"),
    card(fmt(t.answering), "answering now"),
    card(fmt(t.requests), "requests"),
    card(fmt(t.tokens), "tokens"),
    card(money(t.cost), "cost at standard prices"),
    card(data.class.token_budget === null ? "none" : fmt(data.class.token_budget), "class budget per student"));
}

async function poll() {
  try {
    render(await call("GET", "/usage"));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (selected && Date.now() - transcriptsShownAt > 2 * POLL_MS) loadTranscripts(selected);
  } catch (e) {
    document.getElementById("updated").textContent = `not updated: ${e.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// -- actions ----------------------------------------------------------------------------
async function setBudget(label, input) {
  const text = input.value.trim();
  const value = text === "" ? null : Number(text);
  if (value !== null && !(Number.isInteger(value) && value >= 0)) {
    showError("A budget is a whole number of tokens (empty: the class budget).");
    return;
  }
  try {
    fill(rows.get(label), await call("PATCH", `/students/${encodeURIComponent(label)}`, { token_budget: value }));
    input.value = "";
    input.blur();
    showError("");
  } catch (e) { showError(e.message); }
}

async function toggleKey(label, button) {
  const row = rows.get(label);
  try {
    fill(row, await call("PATCH", `/students/${encodeURIComponent(label)}`, { disabled: !row.disabled }));
    showError("");
  } catch (e) { showError(e.message); }
}

async function addStudent(event) {
  event.preventDefault();
  const input = document.getElementById("new-label");
  try {
    const made = await call("POST", "/students", { label: input.value.trim() });
    const box = document.getElementById("new-key");
    box.replaceChildren(
      el("b", {}, `Key for ${made.label}: `), el("code", {}, made.key),
      el("div", { class: "muted" }, "Shown once: copy it now and give it to the student as GEMINI_API_KEY."));
    box.hidden = false;
    input.value = "";
    showError("");
    render(await call("GET", "/usage"));
  } catch (e) { showError(e.message); }
}

// -- transcripts ------------------------------------------------------------------------
const KINDS = { user_input: "Prompt", model_output: "Answer", thought: "Thought",
                function_call: "Function call", function_result: "Function result" };

function contentNode(item) {
  if (item.type === "text") return el("div", { class: "text" }, item.text || "");
  if (item.type === "image" && item.data && /^image\/(png|jpeg|gif|webp)$/.test(item.mime_type || "")) {
    return el("img", { src: `data:${item.mime_type};base64,${item.data}`, alt: "image" });
  }
  const { data, ...rest } = item;            // media bytes are not shown as text
  if (data) rest.data = `(${Math.round(data.length * 3 / 4).toLocaleString("en-US")} bytes)`;
  return el("pre", {}, JSON.stringify(rest, null, 2));
}

function stepNode(step) {
  const node = el("div", { class: `step ${step.type}` },
                  el("div", { class: "kind" }, KINDS[step.type] || step.type.replace(/_/g, " ")));
  if (Array.isArray(step.content)) {
    for (const item of step.content) node.append(contentNode(item || {}));
  } else if (Array.isArray(step.summary)) {
    for (const item of step.summary) node.append(contentNode(item || {}));
  } else {
    const { type, signature, ...rest } = step;
    if (!Object.keys(rest).length) return null;  // a thought's signature alone: nothing to read
    node.append(el("pre", {}, JSON.stringify(rest, null, 2)));
  }
  return node;
}

async function loadTranscripts(label) {
  transcriptsShownAt = Date.now();
  const data = await call("GET", `/students/${encodeURIComponent(label)}/interactions?limit=20`);
  if (label !== selected) return;
  const list = document.getElementById("transcript-list");
  const items = data.interactions.map((it) => {
    const usage = it.usage || {};
    const head = [it.created ? new Date(it.created).toLocaleString() : "", it.status, it.model || it.agent || "",
                  `${fmt(usage.total_tokens)} tokens`].filter(Boolean).join(" · ");
    return el("article", { class: "interaction", "data-id": it.id }, el("h3", {}, head),
              ...(it.steps || []).map(stepNode).filter(Boolean));
  });
  list.replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, "No conversations yet.")]));
}

async function openTranscripts(label) {
  selected = label;
  for (const [l, row] of rows) row.tr.classList.toggle("selected", l === label);
  document.getElementById("transcripts-title").textContent = `Conversations of ${label} (newest first, read-only)`;
  document.getElementById("transcripts").hidden = false;
  try { await loadTranscripts(label); showError(""); } catch (e) { showError(e.message); }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("add").addEventListener("submit", addStudent);
  document.getElementById("close-transcripts").addEventListener("click", () => {
    selected = null;
    document.getElementById("transcripts").hidden = true;
    for (const row of rows.values()) row.tr.classList.remove("selected");
  });
  poll();
});
