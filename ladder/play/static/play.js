// ladder play: the grid in the page. Plain JS, no dependencies; every request carries the token.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
let S = null;            // the server's state
let sel = {row: 0, col: 0};
let shots = [];          // pinned shots for the next column: {id, answer}
let chatTurns = [];
let running = false;

async function api(path, data) {
  const opts = data === undefined ? {} : {method: "POST", body: JSON.stringify(data),
                                          headers: {"Content-Type": "application/json"}};
  opts.headers = Object.assign({"X-Ladder-Token": TOKEN}, opts.headers || {});
  const res = await fetch(path, opts);
  const out = await res.json();
  if (!res.ok) throw new Error(out.error || res.statusText);
  return out;
}

function banner(text, kind) {
  const b = $("banner");
  b.textContent = text || "";
  b.className = text ? kind : "";
}

function esc(s) { const d = document.createElement("div"); d.textContent = s == null ? "" : String(s); return d.innerHTML; }

function colTitle(c) {
  const g = c.gen, sh = c.spec.shots.length;
  return `<span class="lab">${esc(c.label)}</span> ${esc(c.model_label)}<br><span class="m">t=${g.temperature} top_p=${g.top_p} ` +
    `max=${g.max_tokens}${g.n > 1 ? " n=" + g.n : ""}${sh ? " · " + sh + " shots" : ""}</span><br>` +
    `<span class="m metric">${S.metric ? esc(S.metric + " " + c.metric.text) : "no gold metric"}</span>` +
    (c.delta ? `<br><span class="m delta">${esc(c.delta)}</span>` : "");
}

function cellHtml(cell) {
  if (!cell) return ["out", ""];
  const meta = `<span class="meta">${cell.prompt_tokens}+${cell.completion_tokens} tok · ${cell.seconds.toFixed(2)} s · ` +
    `${cell.cached ? "cached" : "$" + cell.cost.toFixed(5)}</span>`;
  if (cell.error) return ["out err", esc(cell.error)];
  const cls = cell.score == null ? "out" : cell.score >= 1 ? "out ok" : cell.score <= 0 ? "out bad" : "out";
  return [cls, cell.outputs.map(esc).join("<hr>") + meta];
}

function render() {
  $("title").textContent = `${S.experiment} · ${S.config} · session ${S.session} · seed ${S.seed}`;
  $("spent").textContent = S.spent.toFixed(4);
  if (document.activeElement !== $("budget")) $("budget").value = S.budget;
  if (document.activeElement !== $("nrows")) $("nrows").value = S.n;
  const head = `<tr><th>row</th><th>input</th><th>gold</th>` +
    S.columns.map((c, j) => `<th data-col="${j}" class="colhead">${colTitle(c)}</th>`).join("") + "</tr>";
  $("grid").tHead.innerHTML = head;
  const pinned = new Set(shots.map((s) => s.id));
  $("grid").tBodies[0].innerHTML = S.rows.map((r, i) => {
    const tds = S.columns.map((c) => {
      const [cls, html] = cellHtml(S.cells[r.id + "|" + c.id]);
      return `<td class="${cls}" data-cell="${esc(r.id)}|${c.id}">${html}</td>`;
    }).join("");
    return `<tr data-row="${i}" class="${i === sel.row ? "sel" : ""} ${pinned.has(r.id) ? "pinned" : ""}">` +
      `<td>${esc(r.id)}</td><td>${esc(r.text)}</td><td>${esc(r.target == null ? "—" : r.target)}</td>${tds}</tr>`;
  }).join("");
  document.querySelectorAll("th.colhead").forEach((th) => {
    th.style.outline = +th.dataset.col === sel.col ? "2px solid #4a7bd0" : "";
  });
  $("shots").innerHTML = shots.map((s, i) =>
    `<li>${esc(s.id)} → <input type="text" data-shot="${i}" value="${esc(s.answer)}" style="width:8em"> ` +
    `<button data-unpin="${i}">unpin</button></li>`).join("");
}

function loadEditor(c) {
  $("instruction").value = c.spec.instruction;
  $("template").value = c.spec.template;
  const m = c.spec.model, base = S.base_model;
  const sameBackend = Object.keys(m).every((k) => k === "name" || JSON.stringify(m[k]) === JSON.stringify(base[k]))
    && Object.keys(base).every((k) => k in m);
  $("model").value = sameBackend ? m.name : JSON.stringify(m);
  $("temperature").value = c.gen.temperature; $("top_p").value = c.gen.top_p;
  $("max_tokens").value = c.gen.max_tokens; $("samples").value = c.gen.n;
  shots = c.spec.shots.map((s) => Object.assign({}, s));
}

async function refresh() { S = await api("/api/state"); render(); }

async function addColumn() {
  const m = $("model").value.trim();
  let model = m;
  if (m.startsWith("{")) {
    try { model = JSON.parse(m); } catch (e) { banner("model: not valid JSON (" + e.message + ")", "error"); return null; }
  }
  try {
    const out = await api("/api/column", {
      instruction: $("instruction").value, template: $("template").value, model: model,
      generation: {temperature: num($("temperature").value), top_p: num($("top_p").value),
                   max_tokens: int($("max_tokens").value), n: int($("samples").value)},
      shots: shots});
    S = out.state;
    sel.col = S.columns.findIndex((c) => c.id === out.id);
    banner("", ""); render();
    return out.id;
  } catch (e) { banner(e.message, "error"); return null; }
}
function num(v) { return v === "" ? null : parseFloat(v); }
function int(v) { return v === "" ? null : parseInt(v, 10); }

async function runAll(columns) {
  if (running) return;
  running = true; banner("running…", "info");
  const errors = [];
  try {
    const res = await fetch("/api/run", {method: "POST", headers: {"Content-Type": "application/json", "X-Ladder-Token": TOKEN},
                                         body: JSON.stringify({columns: columns || null})});
    if (!res.ok) throw new Error("run refused: " + res.status);
    const reader = res.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const item = JSON.parse(buf.slice(0, nl)); buf = buf.slice(nl + 1);
        if (item.type === "cell") {
          S.cells[item.row + "|" + item.column] = item;
          const td = document.querySelector(`td[data-cell="${CSS.escape(item.row + "|" + item.column)}"]`);
          if (td) { const [cls, html] = cellHtml(item); td.className = cls; td.innerHTML = html; }
        } else if (item.type === "error") {
          errors.push(item.message);
        } else if (item.type === "done") {
          S = item.state; render();
        }
      }
    }
    banner(errors.join("\n"), errors.length ? "error" : "");
  } catch (e) { banner(e.message, "error"); }
  running = false;
  document.body.dataset.runs = String(+(document.body.dataset.runs || 0) + 1);
}

function pinSelected() {
  const r = S.rows[sel.row];
  if (!r || r.message) { banner("a free message has no answer to pin; pin a data row", "error"); return; }
  if (shots.some((s) => s.id === r.id)) return;
  if (shots.length >= 10) { banner("at most 10 pinned shots (the few_shot rung takes 1-10)", "error"); return; }
  shots.push({id: r.id, answer: r.target});
  render();
}

async function saveVariant() {
  const c = S.columns[sel.col], name = $("variant-name").value.trim();
  if (!name) { banner("type a variant name first", "error"); $("variant-name").focus(); return; }
  try {
    const out = await api("/api/save", {column: c.id, name: name});
    banner(`saved variant ${out.saved} in ${out.path}: ${out.command}`, "info");
    document.body.dataset.saved = out.saved;
  } catch (e) { banner(e.message, "error"); }
}

async function sendChat() {
  // Each model keeps its own conversation: the same user turns, its own earlier answers.
  const text = $("chat-input").value.trim();
  if (!text) return;
  const models = $("chat-models").value.split(",").map((s) => s.trim()).filter(Boolean);
  const names = models.length ? models : [""];
  const key = JSON.stringify(names);
  if (chatTurns.key !== key) chatTurns = Object.assign([], {key: key, threads: names.map(() => [])});
  chatTurns.threads.forEach((t) => t.push({role: "user", content: text}));
  chatTurns.push({role: "user", content: text});
  $("chat-input").value = "";
  drawChat();
  try {
    const out = await api("/api/chat", {system: $("instruction").value, models: names, threads: chatTurns.threads});
    S.spent = out.spent; $("spent").textContent = S.spent.toFixed(4);
    const replies = Object.values(out.replies);
    chatTurns.threads.forEach((t, i) => { const r = replies[i]; if (r && r.text != null) t.push({role: "assistant", content: r.text}); });
    chatTurns.push({role: "replies", replies: out.replies});
    drawChat();
  } catch (e) { banner(e.message, "error"); }
}
function drawChat() {
  $("turns").innerHTML = chatTurns.map((t) => t.role === "user"
    ? `<div class="turn"><b>you</b>: ${esc(t.content)}</div>`
    : `<div class="replies">` + Object.entries(t.replies).map(([m, r]) =>
        `<div class="reply"><b>${esc(m)}</b><br>${r.error ? "error: " + esc(r.error) : esc(r.text)}</div>`).join("") + "</div>").join("");
}

document.addEventListener("click", (e) => {
  const t = e.target;
  if (t.dataset.unpin !== undefined) { shots.splice(+t.dataset.unpin, 1); render(); return; }
  const th = t.closest("th.colhead");
  if (th) { sel.col = +th.dataset.col; loadEditor(S.columns[sel.col]); render(); return; }
  const tr = t.closest("tr[data-row]");
  if (tr) { sel.row = +tr.dataset.row; render(); }
});
document.addEventListener("input", (e) => {
  if (e.target.dataset.shot !== undefined) shots[+e.target.dataset.shot].answer = e.target.value;
});
$("add-column").onclick = addColumn;
$("run").onclick = () => runAll();
$("save").onclick = saveVariant;
$("shuffle").onclick = async () => { S = await api("/api/rows", {shuffle: Date.now() % 100000}); render(); };
$("nrows").onchange = async () => { S = await api("/api/rows", {n: int($("nrows").value)}); render(); };
$("budget").onchange = async () => { S = await api("/api/rows", {budget: num($("budget").value)}); render(); };
$("filter").onchange = async () => { S = await api("/api/rows", {filter: $("filter").value}); render(); };
$("message").onkeydown = async (e) => {
  if (e.key !== "Enter" || !$("message").value.trim()) return;
  S = await api("/api/rows", {message: $("message").value}); $("message").value = ""; render();
};
$("chat-input").onkeydown = (e) => { if (e.key === "Enter") sendChat(); };
$("chat-toggle").onclick = () => $("chat").classList.toggle("open");
$("help-toggle").onclick = () => $("help").classList.toggle("open");

document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runAll(); return; }
  if (e.key === "Escape") { $("help").classList.remove("open"); document.activeElement.blur(); return; }
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (typing || e.ctrlKey || e.metaKey || e.altKey || !S) return;
  const keys = {
    "j": () => { sel.row = Math.min(S.rows.length - 1, sel.row + 1); render(); },
    "k": () => { sel.row = Math.max(0, sel.row - 1); render(); },
    "l": () => { sel.col = Math.min(S.columns.length - 1, sel.col + 1); render(); },
    "h": () => { sel.col = Math.max(0, sel.col - 1); render(); },
    "p": pinSelected, "n": addColumn, "s": saveVariant,
    "e": () => { loadEditor(S.columns[sel.col]); render(); },
    "c": () => $("chat").classList.toggle("open"),
    "?": () => $("help").classList.toggle("open"),
  };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

(async () => {
  try {
    await refresh();
    if (S.columns.length) loadEditor(S.columns[0]);
    render();
    document.body.dataset.ready = "1";
  } catch (e) { banner(e.message, "error"); }
})();
