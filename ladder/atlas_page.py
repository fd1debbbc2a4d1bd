"""The atlas page: the plotly scatter and, beside it, a small vanilla-JS panel (no network).

The panel recolours (score, stage, gold label), filters (stage, correct / not correct, "stages
disagree") and pins a clicked sample's full text. The data sit in the page once, as JSON: the
figure's traces carry only coordinates and point numbers, and the script rebuilds each trace's
points, colours and hover text from the JSON whenever a control changes.

`fragment` is for a page that already loads plotly.js (the report); `page` is atlas.html, with
plotly.js inlined once.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Point:
    """One sample as the atlas shows it (atlas.py loads them, this page draws them)."""

    stage: str
    example: str
    index: int
    """Sample number within its example (best_of_n has many)."""
    prompt: str
    """The last user turn: what was asked, without instruction and shots."""
    completion: str
    score: float | None
    """This sample's score."""
    label: str
    finish: str
    kept: bool = True
    """The sample the stage kept for its number (best_of_n: `selected`; a one-sample stage: its sample)."""
    samples: int = 1
    """How many samples the stage drew for this example."""
    example_score: float | None = None
    """The example's score in this stage (best_of_n: its selected sample's): what "stages disagree" compares."""


WEBGL_ABOVE = 20_000
"""Points beyond which the scatter is drawn with WebGL: SVG stays smooth up to about this many,
and needs no GPU (headless browsers and some remote desktops have none)."""
SYMBOLS = ["circle", "diamond", "square", "triangle-up", "cross", "x", "star", "pentagon", "hexagon"]
"""Each stage keeps its marker shape in every colouring, so coloured by score it is still told apart."""
MAX_LABELS = 12
"""Label colours are for K-way tasks; free-form targets beyond this many share one grey."""
SCORE_SCALE = [[0.0, "#c0392b"], [0.5, "#e8c547"], [1.0, "#2166ac"]]
"""Red (0) through yellow to blue (1): wrong and right stay apart for red-green colour blindness."""
SPREAD = 0.004
"""Identical texts share a spot; they are laid out as a sunflower disc with this spacing (a
fraction of the map's width and height), so a disc's area shows how many samples it holds."""
GOLDEN = math.pi * (3 - math.sqrt(5))


def correct(score: float | None) -> int | None:
    """1 for full marks (a metric's value 1.0 means correct), 0 below, None when unscored."""
    return None if score is None else int(score >= 1 - 1e-9)


def disagreeing(points: Sequence[Point]) -> set[str]:
    """Examples whose stages disagree: scored differently (each stage's example score), by the
    definition the report's sample browser uses (report_samples.stages_disagree)."""
    from ladder.report_samples import stages_disagree

    seen: dict[str, list[float | None]] = {}
    for p in points:
        seen.setdefault(p.example, []).append(p.example_score)
    return {e for e, scores in seen.items() if stages_disagree(scores)}


def _groups(xy) -> list[list[int]]:
    """Points sharing one spot (identical texts), in order of first appearance."""
    groups: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(xy):
        groups.setdefault((float(x), float(y)), []).append(i)
    return list(groups.values())


def _step(xy):
    """The sunflower spacing, the same on both axes (the map keeps x and y at one scale)."""
    import numpy as np

    span = float(np.max(xy.max(axis=0) - xy.min(axis=0))) if len(xy) else 0.0
    return (span if span > 0 else 1.0) * SPREAD


def _apart(centres, radii, pad: float, rounds: int = 300):
    """Push overlapping discs apart until none overlaps (or `rounds` run out): few distinct answers
    (a classification task) can land two big discs on one another."""
    import numpy as np

    c = centres.copy()
    for _ in range(rounds):
        diff = c[:, None, :] - c[None, :, :]
        dist = np.linalg.norm(diff, axis=2)
        need = radii[:, None] + radii[None, :] + pad
        overlap = np.where(np.eye(len(c), dtype=bool), 0.0, np.maximum(need - dist, 0.0))
        if not overlap.any():
            break
        unit = diff / np.maximum(dist, 1e-12)[..., None]  # centres are distinct spots, never equal
        c += 0.5 * (overlap[..., None] * unit).sum(axis=1)
    return c


def layout(points: Sequence[Point], xy, most: int = 300):
    """(each point's spot on the page, labels for the big discs). Identical spots become sunflower
    discs, best scores at the centre (a disc reads as a proportion of right and wrong), area
    growing with the count; the `most` biggest discs are pushed apart where they overlap."""
    import numpy as np

    xy = np.asarray(xy, dtype=float)
    out, step = xy.copy(), _step(xy)
    stages = {s: k for k, s in enumerate(dict.fromkeys(p.stage for p in points))}
    groups = sorted((g for g in _groups(xy) if len(g) > 1), key=len, reverse=True)[:most]
    if groups:
        centres = np.array([xy[g[0]] for g in groups])
        radii = np.array([step * math.sqrt(len(g)) for g in groups])
        moved = _apart(centres, radii, 2 * step)
    labels, least = [], max(5, len(points) // 100)
    for n, members in enumerate(groups):
        members.sort(key=lambda i: (-(points[i].score if points[i].score is not None else -math.inf),
                                    stages[points[i].stage], points[i].example, points[i].index))
        for j, i in enumerate(members):
            r = math.sqrt(j + 0.5) if j else 0.0
            out[i] = moved[n] + step * np.array([r * math.cos(j * GOLDEN), r * math.sin(j * GOLDEN)])
        text = _shared(points, members)
        if len(members) >= least and text is not None and len(labels) < 20:
            labels.append({"x": float(moved[n][0]), "y": float(moved[n][1] + radii[n] + step),
                           "text": f"“{text or '(empty)'}” · {len(members):,}"})
    return out, labels


def spread(points: Sequence[Point], xy):
    """Each point's spot on the page (see `layout`)."""
    return layout(points, xy)[0]


def _shared(points: Sequence[Point], members: list[int]) -> str | None:
    """The text a disc's points share (their completion, else their prompt), cut for a label."""
    for text_of in (lambda p: p.completion, lambda p: p.prompt):
        texts = {text_of(points[i]) for i in members}
        if len(texts) == 1:
            text = " ".join(texts.pop().split())
            return (text[:40] + "…") if len(text) > 40 else text
    return None


def data(points: Sequence[Point], xy) -> dict[str, Any]:
    """What the page's script works from: examples once (prompt, gold, disagree) and the points as
    columns, at their spread-out spots (`xy` are the map's: identical texts share one)."""
    from collections import Counter

    from plotly.colors import qualitative

    palette = qualitative.Plotly + qualitative.D3
    stages = list(dict.fromkeys(p.stage for p in points))
    labels = [label for label, _ in Counter(p.label for p in points).most_common(MAX_LABELS)]
    label_index = {label: i for i, label in enumerate(labels)}
    split = disagreeing(points)
    examples: dict[str, int] = {}
    ex: list[list[Any]] = []
    for p in points:
        if p.example not in examples:
            examples[p.example] = len(ex)
            ex.append([p.example, p.prompt, p.label, int(p.example in split), label_index.get(p.label, -1)])
    stage_index = {s: k for k, s in enumerate(stages)}
    xy, named = layout(points, xy)
    scores = [p.score for p in points if p.score is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    lo, hi = min(lo, 0.0), max(hi, 1.0) if hi <= 1 else hi  # a 0–1 metric keeps the 0–1 scale
    return {
        "stages": stages, "palette": [palette[k % len(palette)] for k in range(len(stages))],
        "symbols": [SYMBOLS[k % len(SYMBOLS)] for k in range(len(stages))],
        "labels": labels, "labelColours": [palette[i % len(palette)] for i in range(len(labels))],
        "scale": SCORE_SCALE, "lo": lo, "hi": hi, "ex": ex, "spots": named,
        "p": {"s": [stage_index[p.stage] for p in points], "e": [examples[p.example] for p in points],
              "i": [p.index for p in points], "n": [p.samples for p in points], "k": [int(p.kept) for p in points],
              "c": [p.completion for p in points], "sc": [p.score for p in points],
              "ok": [correct(p.score) for p in points], "f": [p.finish for p in points],
              "x": [round(float(v), 5) for v in xy[:, 0]], "y": [round(float(v), 5) for v in xy[:, 1]]},
    }


def figure(points: Sequence[Point], xy, title: str, d: dict[str, Any] | None = None):
    """The scatter as first drawn (coloured by score): a trace per stage, empty label-legend traces
    (shown while colouring by label) and a last trace that rings the pinned point."""
    import plotly.graph_objects as go

    d = d or data(points, xy)
    p = d["p"]
    scatter = go.Scattergl if len(points) > WEBGL_ABOVE else go.Scatter
    fig = go.Figure()
    for k, stage in enumerate(d["stages"]):
        idx = [j for j, s in enumerate(p["s"]) if s == k]
        fig.add_trace(scatter(
            x=[p["x"][j] for j in idx], y=[p["y"][j] for j in idx], customdata=idx, mode="markers", name=stage,
            legendgroup=f"stage{k}", showlegend=False, hoverinfo="text",
            marker=dict(size=7, opacity=0.8, line=dict(width=0), symbol=d["symbols"][k],
                        color=[math.nan if p["sc"][j] is None else p["sc"][j] for j in idx], colorscale=d["scale"], cmin=d["lo"], cmax=d["hi"],
                        showscale=k == 0, colorbar=dict(title=dict(text="score"), thickness=14, len=0.6))))
    for label, colour in zip(d["labels"], d["labelColours"]):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"gold: {label}", visible=False,
                                 marker=dict(size=8, color=colour), legendgroup="labels"))
    fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="pinned", showlegend=False, hoverinfo="skip",
                             marker=dict(size=18, symbol="circle-open", color="#111", line=dict(width=2.5))))
    # The stages' legend: grey shapes (a stage trace's own legend swatch would show its first
    # point's score colour); a click on one still hides its stage, through the legend group.
    for k, stage in enumerate(d["stages"]):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=stage, legendgroup=f"stage{k}",
                                 hoverinfo="skip", marker=dict(size=9, color="#666", symbol=d["symbols"][k])))
    fig.update_layout(
        # Two lines: on one, a narrow window (800 px) ran the title under the plot's toolbar.
        title=dict(text=_two_line_title(title), x=0.01, y=0.99, yanchor="top", font=dict(size=14)),
        template="plotly_white", height=720, hovermode="closest", uirevision="atlas",
        xaxis=dict(showticklabels=False, title=None, zeroline=False, showgrid=False, constrain="domain"),
        # One scale on both axes: UMAP distances are the same in every direction, and discs stay round.
        yaxis=dict(showticklabels=False, title=None, zeroline=False, showgrid=False, scaleanchor="x",
                   scaleratio=1, constrain="domain"),
        annotations=[dict(x=a["x"], y=a["y"], text=html.escape(a["text"], quote=False), showarrow=False,
                          yanchor="bottom", font=dict(size=12, color="#333"), bgcolor="rgba(255,255,255,0.7)")
                     for a in d["spots"]],
        # The legend (stage shapes) goes below the map, leaving the right edge to the colour bar.
        legend=dict(itemsizing="constant", orientation="h", x=0, y=-0.02, yanchor="top"),
        hoverlabel=dict(align="left"), margin=dict(l=10, r=10, t=70, b=10))
    return fig


def _two_line_title(title: str) -> str:
    """'exp: 900 points (…) · 3 distinct … · tfidf …' → the name and count, then the rest smaller."""
    head, sep, rest = html.escape(title, quote=False).partition(" · ")
    return head + (f"<br><span style='font-size:12px;color:#555'>{rest}</span>" if sep else "")


def fragment(points: Sequence[Point], xy, title: str) -> str:
    """The atlas for a page that already loads plotly.js: map, panel, data and script."""
    d = data(points, xy)
    fig = figure(points, xy, title, d)
    uid = "atlas-" + hashlib.sha1(json.dumps(d["p"]["x"][:50] + [title]).encode()).hexdigest()[:10]
    plot = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{uid}-map", default_width="100%",
                       default_height="720px", config={"displaylogo": False, "responsive": True})
    stages = "".join(
        f"<label><input type='checkbox' name='stage' value='{k}' checked> {html.escape(s)} "
        f"<span class='la-n'>({d['p']['s'].count(k):,})</span></label>" for k, s in enumerate(d["stages"]))
    n_split = sum(e[3] for e in d["ex"])
    # Inside <script>, "</script>" or "<!--" in a completion would end the block: escape < > & in the JSON.
    blob = json.dumps(d, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")
    return PANEL.format(uid=uid, plot=plot, stages=stages, n_split=f"{n_split:,}", n_ex=f"{len(d['ex']):,}",
                        n=f"{len(points):,}", data=blob, script=SCRIPT.replace("__ID__", uid))


def page(points: Sequence[Point], xy, title: str) -> str:
    """atlas.html: the fragment with plotly.js inlined once (the smallest bundle that draws it)."""
    from ladder.plotly_bundle import script_for

    body = fragment(points, xy, title)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            "<style>body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 16px; "
            f"color: #1d1d1f; }}</style>\n{script_for(body)}\n</head><body>\n{body}\n</body></html>\n")


PANEL = """<style>
.la-atlas {{ display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }}
/* The panel comes first in the page, so the map is drawn at its final width, and is shown second. */
.la-map {{ flex: 1 1 640px; min-width: 0; order: 1; }}
.la-side {{ flex: 0 0 340px; order: 2; max-width: 100%; font-size: 13px; }}
.la-side fieldset {{ border: 1px solid #ddd; border-radius: 4px; margin: 0 0 8px; padding: 4px 8px 6px; }}
.la-side legend {{ font-weight: 600; padding: 0 4px; }}
.la-side label {{ display: inline-block; margin-right: 10px; white-space: nowrap; }}
.la-n, .la-hint {{ color: #777; }}
.la-count {{ margin: 4px 0 8px; font-weight: 600; }}
.la-pin {{ border-top: 2px solid #333; padding-top: 6px; max-height: 520px; overflow-y: auto; }}
.la-pin pre {{ white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: 6px; margin: 2px 0 8px;
               font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; max-height: 220px; overflow-y: auto; }}
.la-pin h4 {{ margin: 6px 0 2px; font-size: 12px; text-transform: uppercase; color: #555; }}
.la-pin table {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
.la-pin td {{ border-bottom: 1px solid #eee; padding: 2px 4px; text-align: left; vertical-align: top; white-space: normal; }}
.la-pin tr[data-j] {{ cursor: pointer; }} .la-pin tr[data-j]:hover {{ background: #eef4fb; }}
.la-pin tr.la-this {{ font-weight: 600; }}
.la-pin button {{ float: right; }}
</style>
<div class="la-atlas" id="{uid}">
<aside class="la-side">
<fieldset><legend>Colour by</legend>
<label><input type="radio" name="colour" value="score" checked> score</label>
<label><input type="radio" name="colour" value="stage"> stage</label>
<label><input type="radio" name="colour" value="label"> gold label</label></fieldset>
<fieldset class="la-stages"><legend>Stages</legend>{stages}</fieldset>
<fieldset><legend>Score</legend>
<label><input type="radio" name="correct" value="all" checked> all</label>
<label><input type="radio" name="correct" value="correct"> correct (1)</label>
<label><input type="radio" name="correct" value="wrong"> not correct (&lt; 1)</label></fieldset>
<fieldset><legend>Examples</legend>
<label title="the stages scored the example differently"><input type="checkbox" name="disagree"> stages disagree <span class="la-n">({n_split} of {n_ex})</span></label>
</fieldset>
<div class="la-count">{n} points</div>
<div class="la-pin"><span class="la-hint">Click a point to pin its full prompt, completion, score, stage
and finish reason here.</span></div>
</aside>
<div class="la-map">{plot}</div>
</div>
<script type="application/json" id="{uid}-data">{data}</script>
<script>{script}</script>"""

SCRIPT = r"""
(function () {
  const root = document.getElementById('__ID__'), gd = document.getElementById('__ID__-map');
  const D = JSON.parse(document.getElementById('__ID__-data').textContent), P = D.p;
  const S = D.stages.length, L = D.labels.length, N = P.x.length;
  const stageTraces = [...Array(S).keys()], labelTraces = [...Array(L).keys()].map(i => S + i), pinTrace = S + L,
    shapeTraces = stageTraces.map(t => S + L + 1 + t);
  const byStage = stageTraces.map(() => []), kept = {};
  for (let j = 0; j < N; j++) {
    byStage[P.s[j]].push(j);
    if (P.k[j]) (kept[P.e[j]] = kept[P.e[j]] || []).push(j);
  }
  const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  const cut = (s, n) => { s = String(s).replace(/\s+/g, ' ').trim(); return s.length > n ? s.slice(0, n) + '…' : s; };
  const wrap = (s, n, w) => { s = cut(s, n); const out = []; for (let i = 0; i < s.length; i += w) out.push(esc(s.slice(i, i + w))); return out.join('<br>') || '<i>(empty)</i>'; };
  const fmt = v => v === null ? 'n/a' : String(+v.toPrecision(3));
  const sample = j => P.n[j] > 1 ? ` · sample ${P.i[j] + 1} of ${P.n[j]}${P.k[j] ? ' (selected)' : ''}` : '';
  const hover = j => { const e = D.ex[P.e[j]];
    return `<b>${esc(D.stages[P.s[j]])}</b> · score ${fmt(P.sc[j])} · ${esc(P.f[j] || '—')} · example ${esc(e[0])}${sample(j)}` +
      `<br><b>prompt</b> ${wrap(e[1], 200, 90)}<br><b>completion</b> ${wrap(P.c[j], 300, 90)}` +
      `<br><b>gold</b> ${esc(cut(e[2], 80))}   <i>click to pin</i>`; };
  const ctl = () => ({
    colour: root.querySelector('input[name=colour]:checked').value,
    stages: new Set([...root.querySelectorAll('input[name=stage]:checked')].map(i => +i.value)),
    correct: root.querySelector('input[name=correct]:checked').value,
    disagree: root.querySelector('input[name=disagree]').checked});
  function redraw() {
    const c = ctl(), keep = j => (c.correct === 'all' || P.ok[j] === (c.correct === 'correct' ? 1 : 0)) &&
      (!c.disagree || D.ex[P.e[j]][3] === 1);
    const u = {x: [], y: [], customdata: [], hovertext: [], 'marker.color': [], 'marker.showscale': []};
    let shown = 0, bar = c.colour === 'score';
    for (const t of stageTraces) {
      const idx = c.stages.has(t) ? byStage[t].filter(keep) : [];
      shown += idx.length;
      u.x.push(idx.map(j => P.x[j])); u.y.push(idx.map(j => P.y[j])); u.customdata.push(idx);
      u.hovertext.push(idx.map(hover));
      u['marker.color'].push(c.colour === 'stage' ? D.palette[t] : c.colour === 'label'
        ? idx.map(j => { const l = D.ex[P.e[j]][4]; return l < 0 ? '#999999' : D.labelColours[l]; })
        : idx.map(j => P.sc[j]));
      u['marker.showscale'].push(bar && idx.length > 0);  // one colour bar, on the first trace drawn
      if (bar && idx.length > 0) bar = false;
    }
    Plotly.restyle(gd, u, stageTraces);
    Plotly.restyle(gd, {'marker.color': stageTraces.map(t => c.colour === 'stage' ? D.palette[t] : '#666')}, shapeTraces);
    if (L) Plotly.restyle(gd, {visible: labelTraces.map(() => c.colour === 'label')}, labelTraces);
    root.querySelector('.la-count').textContent = `${shown.toLocaleString('en')} of ${N.toLocaleString('en')} points shown`;
    root.dataset.shown = shown;
  }
  function pin(j) {
    const e = D.ex[P.e[j]], box = root.querySelector('.la-pin');
    Plotly.restyle(gd, {x: [[P.x[j]]], y: [[P.y[j]]]}, [pinTrace]);
    const rows = (kept[P.e[j]] || []).map(i => `<tr data-j="${i}"${i === j ? ' class="la-this"' : ''}><td>${esc(D.stages[P.s[i]])}</td>` +
      `<td>${esc(cut(P.c[i], 120)) || '<i>(empty)</i>'}</td><td>${fmt(P.sc[i])}</td></tr>`).join('');
    box.innerHTML = `<button type="button" class="la-unpin">unpin</button>` +
      `<div><b>${esc(D.stages[P.s[j]])}</b> · example ${esc(e[0])}${sample(j)}</div>` +
      `<div>score <b>${fmt(P.sc[j])}</b> · finish reason <b>${esc(P.f[j] || '—')}</b> · gold <b>${esc(e[2])}</b>` +
      `${e[3] ? ' · <b>stages disagree</b>' : ''}</div>` +
      `<h4>Prompt</h4><pre>${esc(e[1])}</pre><h4>Completion</h4><pre>${esc(P.c[j]) || '<i>(empty)</i>'}</pre>` +
      `<h4>This example in each stage</h4><table><tbody>${rows}</tbody></table>`;
    root.dataset.pinned = j;
  }
  root.addEventListener('change', redraw);
  root.querySelector('.la-pin').addEventListener('click', ev => {
    if (ev.target.closest('.la-unpin')) {
      Plotly.restyle(gd, {x: [[]], y: [[]]}, [pinTrace]);
      root.querySelector('.la-pin').innerHTML = '<span class="la-hint">Click a point to pin its full text here.</span>';
      delete root.dataset.pinned; return; }
    const row = ev.target.closest('tr[data-j]'); if (row) pin(+row.dataset.j);
  });
  function start() {
    if (!window.Plotly || !gd._fullLayout || !gd.on) return setTimeout(start, 30);
    gd.on('plotly_click', ev => { const pt = ev.points.find(p => p.curveNumber < S); if (pt) pin(pt.customdata); });
    redraw();
    root.__pin = pin;  // for scripts/check_report.py and tests: pin a point by number
  }
  start();
})();
"""
