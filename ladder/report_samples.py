"""The report's sample browser: one row per test example, a column per stage with its answer and
score, filters, a search and a click-through to the full record.

Static HTML: the records are embedded as JSON (strings interned once: a few-shot prompt's shots
and best-of-N's repeated one-word answers would otherwise be written thousands of times) and
drawn by a little vanilla JavaScript, a page of PAGE_SIZE rows at a time, so a report over many
thousands of examples stays responsive and needs no network.

What the filters mean (scripts/check_report.py recounts them from samples.jsonl):
  - wrong in any stage: some stage's record of the example has no score, an error, or a score
    below 1 (the metric's best);
  - stages disagree: the stages that scored the example gave it different scores (e.g. one right,
    one wrong) — `stages_disagree`, the one definition the atlas panel uses too;
  - changed between A and B: both stages have the example and their scores differ.
An answer is what the metric extracted from the kept sample (best_of_n: the selected one), else
its text, stripped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Iterable

from ladder.evidence import Evidence
from ladder.store import read_jsonl
from ladder.types import Record

PAGE_SIZE = 100


def answer_of(rec: Record) -> str:
    """The answer a record gave: best_of_n's `answer`, else the kept sample's extraction or text."""
    if rec.after.get("answer") is not None:
        return str(rec.after["answer"]).strip()
    if not rec.samples:
        return ""
    s = rec.samples[rec.selected if isinstance(rec.selected, int) and rec.selected < len(rec.samples) else 0]
    got = s.get("extracted")
    return str(got if got is not None else s.get("text", "")).strip()


def stages_disagree(scores: Iterable[float | None]) -> bool:
    """The one meaning of "stages disagree", in the report's sample browser and the atlas panel:
    the stages that scored an example gave it different scores. Scores, not answer texts: on a
    free-form task every two completions differ as text, and two different wrong answers of a
    K-way task are the same outcome (the confusion matrices show which wrong answer)."""
    return len({round(float(s), 9) for s in scores if s is not None}) > 1


def wrong(rec: Record) -> bool:
    return rec.error or rec.score is None or rec.score < 1


class _Strings:
    """An interned string table: each distinct string once, referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, s: Any) -> int:
        s = "" if s is None else str(s)
        if s not in self.index:
            self.index[s] = len(self.table)
            self.table.append(s)
        return self.index[s]


def _score(v: Any) -> float | None:
    return round(float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


SAMPLE_KEYS = ("finish_reason", "score", "extracted", "selector", "error", "completion_tokens")


def _sample(s: dict[str, Any], strings: _Strings, extra: list[str] = ()) -> list[Any]:
    """[text, *SAMPLE_KEYS, *extra] of one sample: strings interned, numbers rounded; `extra` the
    further metrics of `metrics:`, each sample's score by them."""
    out: list[Any] = [strings(s.get("text"))]
    for k in SAMPLE_KEYS:
        v = s.get(k)
        out.append(v if k in ("finish_reason", "error") else _score(v) if k != "extracted"
                   else None if v is None else strings(v))
    out += [_score((s.get("metrics") or {}).get(name)) for name in extra]
    reply = response_of(s)
    return out + [None if reply is None else strings(reply)]  # dropped again when no sample has a respondent's reply


def response_of(s: dict[str, Any]) -> str | None:
    """The respondent's reply to a sample (red-teaming: what the metric scored), or None."""
    got = (s.get("score_meta") or {}).get("response")
    return got if isinstance(got, str) else None


def browser_data(ev: Evidence) -> dict[str, Any]:
    """Everything the browser shows, as JSON-ready lists (see the JavaScript below for the shape)."""
    strings = _Strings()
    stages, rows, order = [], {}, []
    extra = list(dict.fromkeys(n for r in ev.results for n in (r.extra.metrics or {})))
    raw: dict[str, list[float | None]] = {}  # each example's unrounded scores, for stages_disagree
    responded = False  # a respondent replied to some sample: its reply is a column of the samples
    for r in ev.results:
        path = Path(ev.folder) / r.stage / r.run_id / "samples.jsonl"
        if not path.exists():
            continue
        col = len(stages)
        stages.append({"name": r.stage, "oracle": r.oracle})
        for d in read_jsonl(path):
            rec = Record.from_dict(d)
            key = str(rec.id)
            if key not in rows:
                rows[key] = {"id": key, "input": strings(rec.user_prompt()), "target": strings(_text(rec.target)),
                             "cells": {}}
                order.append(key)
            raw.setdefault(key, []).append(None if rec.error else rec.score)
            samples = [_sample(s, strings, extra) for s in rec.samples]
            kept = rec.samples[rec.selected] if isinstance(rec.selected, int) and rec.samples else \
                (rec.samples[0] if rec.samples else {})
            reply = response_of(kept)
            responded = responded or any(response_of(s) is not None for s in rec.samples)
            rows[key]["cells"][col] = {
                "a": strings(answer_of(rec)), "s": _score(rec.score), "w": wrong(rec), "e": rec.error,
                "r": None if reply is None else strings(reply),
                "p": [[m.get("role", ""), strings(m.get("content", ""))] for m in rec.prompt],
                "n": samples, "k": rec.selected if isinstance(rec.selected, int) else None}
    if not responded:
        for row in rows.values():
            for cell in row["cells"].values():
                cell.pop("r")
                for s in cell["n"]:
                    s.pop()
    return {"stages": stages, "strings": strings.table, "page": PAGE_SIZE,
            "sample_keys": ["text", *SAMPLE_KEYS, *extra, *(["response"] if responded else [])],
            "rows": [{**rows[k], "cells": [rows[k]["cells"].get(i) for i in range(len(stages))],
                      "d": int(stages_disagree(raw[k]))} for k in order]}


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def samples_html(ev: Evidence) -> str:
    data = browser_data(ev)
    if not data["rows"]:
        return "<p>No samples recorded.</p>"
    # Inside <script>, "</" would end the element: JSON allows "<\\/" for it.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    options = "".join(f"<option value='{i}'>{html.escape(s['name'])}</option>" for i, s in enumerate(data["stages"]))
    last = len(data["stages"]) - 1
    return (BROWSER.replace("{options}", options).replace("{last}", str(last))
            + f"<script type='application/json' id='sample-data'>{blob}</script>" + SCRIPT)


BROWSER = """<div id="samples" class="samples" data-total="0">
<div class="controls">
 <label><input type="radio" name="sf" value="all" checked> all</label>
 <label><input type="radio" name="sf" value="wrong"> wrong in any stage</label>
 <label title="the stages scored the example differently"><input type="radio" name="sf" value="disagree"> stages disagree</label>
 <label><input type="radio" name="sf" value="changed"> changed between</label>
 <select id="sf-a">{options}</select> and <select id="sf-b">{options}</select>
 <input type="search" id="sf-q" placeholder="search id, input, target, answers" size="24">
 <span id="sf-count" class="count"></span>
 <span class="pager"><button id="sf-prev">‹ prev</button> <span id="sf-page"></span> <button id="sf-next">next ›</button></span>
</div>
<p class="rule">Each cell: the stage's answer and score (green = 1, red = below 1 or failed). "Wrong": a
score below 1 or no score. "Stages disagree": the stages scored the example differently (as in the
atlas panel). "Changed": the two stages' scores differ. With a respondent, "→" shows its reply (what the
metric scored). Click a cell for the full record.</p>
<div class="sample-table"><table class="samples"><thead></thead><tbody></tbody></table></div>
<div id="sf-detail" class="detail" hidden></div>
</div>
<script>document.getElementById('sf-b').value = '{last}';</script>
"""

SCRIPT = """<script>
(() => {
  const D = JSON.parse(document.getElementById('sample-data').textContent);
  const S = D.strings, root = document.getElementById('samples');
  const $ = id => document.getElementById(id);
  let shown = [], page = 0, picked = null;  // picked: [row in shown, stage] of the clicked cell
  const ENT = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  const esc = s => String(s).replace(/[&<>"']/g, c => ENT[c]);
  const fmt = v => v === null || v === undefined ? '—' : (Math.round(v * 1000) / 1000).toString();
  function keep(row, f, a, b, q) {
    const cells = row.cells.filter(c => c);
    if (f === 'wrong' && !cells.some(c => c.w)) return false;
    if (f === 'disagree' && !row.d) return false;
    if (f === 'changed') {
      const x = row.cells[a], y = row.cells[b];
      if (!x || !y || x.s === y.s) return false;
    }
    if (q) {
      const hay = [row.id, S[row.input], S[row.target], ...cells.map(c => S[c.a]),
                   ...cells.map(c => c.r == null ? '' : S[c.r])].join('\\n').toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }
  function apply() {
    const f = document.querySelector('input[name=sf]:checked').value;
    const a = +$('sf-a').value, b = +$('sf-b').value, q = $('sf-q').value.trim().toLowerCase();
    shown = D.rows.filter(r => keep(r, f, a, b, q));
    page = 0;
    picked = null;
    draw();
  }
  function draw() {
    const pages = Math.max(1, Math.ceil(shown.length / D.page));
    page = Math.min(page, pages - 1);
    root.dataset.total = shown.length;
    $('sf-count').textContent = shown.length + ' of ' + D.rows.length + ' examples';
    $('sf-page').textContent = 'page ' + (page + 1) + ' / ' + pages;
    const head = '<tr><th>id</th><th>input</th><th>target</th>' +
      D.stages.map(s => '<th>' + esc(s.name) + (s.oracle ? ' (oracle)' : '') + '</th>').join('') + '</tr>';
    root.querySelector('thead').innerHTML = head;
    root.querySelector('tbody').innerHTML = shown.slice(page * D.page, (page + 1) * D.page).map((r, i) =>
      '<tr><td>' + esc(r.id) + '</td><td class="input">' + esc(S[r.input].slice(0, 160)) + '</td><td>' +
      esc(S[r.target]) + '</td>' + r.cells.map((c, j) => c ? '<td class="cell ' + (c.w ? 'bad' : 'good') +
      (picked && picked[0] === page * D.page + i && picked[1] === j ? ' picked' : '') +
      '" data-row="' + (page * D.page + i) + '" data-col="' + j + '">' + esc(S[c.a].slice(0, 40) || '∅') +
      (c.r == null ? '' : ' → <i class="reply">' + esc(S[c.r].slice(0, 40) || '∅') + '</i>') +
      ' <span class="score">' + fmt(c.s) + '</span></td>' : '<td class="none">—</td>').join('') + '</tr>'
    ).join('');
  }
  function detail(row, j) {
    const c = row.cells[j], K = D.sample_keys, st = D.stages[j];
    const prompt = c.p.map(([role, t]) => '<div class="msg"><b>' + esc(role) + '</b><pre>' + esc(S[t]) +
      '</pre></div>').join('');
    const samples = c.n.map((s, i) => '<tr' + (i === c.k ? ' class="selected"' : '') + '><td>' +
      (i === c.k ? '★ ' : '') + (i + 1) + '</td><td><pre>' + esc(S[s[0]]) + '</pre></td>' +
      s.slice(1).map((v, m) => '<td>' + esc(v === null ? '—' : (K[m + 1] === 'extracted' || K[m + 1] === 'response') ? S[v] : v) +
        '</td>').join('') +
      '</tr>').join('');
    const box = $('sf-detail');
    box.hidden = false;
    box.innerHTML = '<button id="sf-close">close</button><h3>' + esc(row.id) + ' · ' + esc(st.name) +
      (st.oracle ? ' (oracle)' : '') + '</h3><p>target <b>' + esc(S[row.target]) + '</b> · answer <b>' +
      esc(S[c.a]) + '</b>' + (c.r == null ? '' : ' · the respondent replied <b>' + esc(S[c.r]) + '</b>') +
      ' · score <b>' + fmt(c.s) + '</b>' + (c.e ? ' · <b class="bad">error</b>' : '') +
      (c.k !== null ? ' · ★ the selected sample' : '') + '</p><h4>prompt</h4>' + prompt +
      '<h4>completions (' + c.n.length + ')</h4><table class="completions"><thead><tr><th>#</th>' +
      K.map(k => '<th>' + esc(k) + '</th>').join('') + '</tr></thead><tbody>' + samples + '</tbody></table>';
    $('sf-close').onclick = () => {
      box.hidden = true;
      picked = null;
      root.querySelectorAll('td.cell.picked').forEach(el => el.classList.remove('picked'));
    };
    box.scrollIntoView({block: 'nearest'});
  }
  root.querySelector('tbody').addEventListener('click', e => {
    const td = e.target.closest('td.cell');
    if (!td) return;
    root.querySelectorAll('td.cell.picked').forEach(el => el.classList.remove('picked'));
    td.classList.add('picked');
    picked = [+td.dataset.row, +td.dataset.col];
    detail(shown[picked[0]], picked[1]);
  });
  root.querySelectorAll('input[name=sf]').forEach(el => el.addEventListener('change', apply));
  ['sf-a', 'sf-b'].forEach(id => $(id).addEventListener('change', apply));
  $('sf-q').addEventListener('input', apply);
  $('sf-prev').onclick = () => { page = Math.max(0, page - 1); draw(); };
  $('sf-next').onclick = () => { page += 1; draw(); };
  apply();
})();
</script>
"""
