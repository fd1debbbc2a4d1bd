"""`ladder report`: one self-contained HTML page per experiment (results/<exp>/report.html).

The page has the stage table with CIs and paired differences, a chart of the stages, the climb
record, the next steps, every guard warning, each stage's curves and the sample atlas. plotly.js
is inlined once, so the page opens offline.

Curves come from each stage's metrics.json `extra`. The preferred shape (best_of_n, sft and rl
write this):

    extra["curves"] = {
        "reward_vs_n": {"x": [1, 2, 4, 8], "y": {"selector": [...], "metric": [...]},
                        "xlabel": "N", "ylabel": "score"},
        "loss": {"x": [0, 10, 20], "y": {"train": [...], "test": [...]}, "xlabel": "step",
                 "ylabel": "loss", "hlines": {"chance −log(1/K)": 1.0986}},
    }

`y` may also be a single list. Anything else in `extra` that looks like a curve is drawn too,
up to two levels deep (what best_of_n and sft write today is of these kinds):
  - a list of points: [{"k": 1, "selector": 0.3, "kl_bound": 0.0}, ...] (x from x/k/n/step/epoch/...);
  - a dict of equal-length number lists: {"step": [...], "loss": [...], "accuracy": [...]};
  - a list of [x, y] pairs: [[10, 2.1], [20, 1.7]]; or a plain list of numbers (x = index).
A number in `extra`, or one level down, whose key names "chance" (e.g. "chance_loss": 1.0986)
becomes a dashed line on that stage's loss curves. Series are split into panels by kind (loss /
kl / the rest), so a loss and an accuracy never share an axis.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.advice import next_steps
from ladder.errors import LadderError
from ladder.evidence import Evidence
from ladder.progress import progress_bar
from ladder.store import atomic_write, read_json
from ladder.table import ORACLE_NOTE, baseline_row, chance_text, diff_sign, diff_text, num, stage_label, table_rows

X_KEYS = ("x", "k", "n", "step", "steps", "epoch", "iteration", "iter", "round")
MAX_CURVES = 24
"""Per stage: more is almost certainly not a set of curves but some other list data."""


@dataclass
class Curve:
    name: str
    x: list[float]
    series: dict[str, list[float]]
    xlabel: str = ""
    ylabel: str = ""
    hlines: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Finding curves in `extra`


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 2 and all(_num(e) or e is None for e in v) and any(_num(e) for e in v)


def _from_columns(name: str, cols: dict[str, list], xlabel: str = "", ylabel: str = "") -> Curve | None:
    lists = {k: v for k, v in cols.items() if _numbers(v)}
    lengths = {len(v) for v in lists.values()}
    if not lists or len(lengths) != 1:
        return None
    xkey = next((k for k in X_KEYS if k in lists), None)
    series = {k: v for k, v in lists.items() if k not in X_KEYS}  # an epoch beside a step is an axis too
    if not series:
        return None
    x = lists[xkey] if xkey else list(range(lengths.pop()))
    return Curve(name, x, series, xlabel or (xkey or "index"), ylabel)


def _from_spec(name: str, spec: dict[str, Any]) -> Curve | None:
    """The documented shape: {"x": [...], "y": [...] | {series: [...]}, xlabel, ylabel, hlines}."""
    y = spec.get("y")
    series = y if isinstance(y, dict) else {spec.get("ylabel") or name: y}
    curve = _from_columns(name, {"x": spec.get("x"), **series}, spec.get("xlabel", ""), spec.get("ylabel", ""))
    if curve is None and isinstance(spec.get("points"), list):
        curve = _from_points(name, spec["points"])
    if curve is not None:
        curve.hlines = {k: float(v) for k, v in (spec.get("hlines") or {}).items() if _num(v)}
    return curve


def _from_points(name: str, points: list) -> Curve | None:
    if len(points) < 2 or not all(isinstance(p, dict) for p in points):
        return None
    keys = [k for k in points[0] if all(_num(p.get(k)) or p.get(k) is None for p in points)]
    return _from_columns(name, {POINT_LABELS.get(k, k): [p.get(k) for p in points] for k in keys})


POINT_LABELS = {"kl_bound": "KL upper bound log k − (k−1)/k", "kl_pool": "KL over the sample pool (exact)"}
"""Readable series names for keys of best_of_n's curve points: the bound must read as a bound."""


def curves_of(extra: dict[str, Any]) -> list[Curve]:
    """Every curve-like entry of a metrics.json `extra` (see the module docstring)."""
    out: list[Curve] = []
    specs = extra.get("curves")
    if isinstance(specs, dict):
        for name, spec in specs.items():
            curve = _from_spec(name, spec) if isinstance(spec, dict) else None
            if curve is None and isinstance(spec, (dict, list)):
                curve = _guess(name, spec)
            if curve is not None:
                out.append(curve)

    def walk(node: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in node.items():
            if key == "curves" and not prefix:
                continue
            name = f"{prefix}{key}"
            curve = _guess(name, value)
            if curve is not None:
                out.append(curve)
            elif isinstance(value, dict) and depth < 2:
                walk(value, f"{name}.", depth + 1)

    walk(extra, "", 1)
    # e.g. extra["chance_loss"] or extra["choice_loss"]["chance_loss"] (what sft writes)
    nested = [(k, v) for d in extra.values() if isinstance(d, dict) for k, v in d.items()]
    chance = {k: float(v) for k, v in [*extra.items(), *nested] if _num(v) and "chance" in k.lower()}
    for curve in out:
        if any("loss" in s.lower() for s in [curve.name, *curve.series]):
            curve.hlines = {**chance, **curve.hlines}
    return out[:MAX_CURVES]


def _guess(name: str, value: Any) -> Curve | None:
    if isinstance(value, list):
        short = name.rsplit(".", 1)[-1]
        if _numbers(value):  # a lone list of steps or Ns is an axis, not a curve
            return None if short in X_KEYS else Curve(name, list(range(len(value))), {short: value}, "index")
        if len(value) >= 2 and all(isinstance(p, list) and len(p) == 2 and all(map(_num, p)) for p in value):
            return Curve(name, [p[0] for p in value], {short: [p[1] for p in value]}, "step")  # [[step, loss], ...]
        return _from_points(name, value)
    if isinstance(value, dict):
        if "x" in value and "y" in value:
            return _from_spec(name, value)
        return _from_columns(name, value)
    return None


def _kind(series: str) -> str:
    s = series.lower()
    return "loss" if "loss" in s else "kl" if "kl" in s else "value"


def curve_figure(stage: str, curve: Curve):
    """One figure per curve; series of different kinds (loss, kl, other) get side-by-side panels."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups: dict[str, list[str]] = {}
    for s in curve.series:
        groups.setdefault(_kind(s), []).append(s)
    kinds = list(groups)
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds if len(kinds) > 1 else None)
    xs = [v for v in curve.x if _num(v)]
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 16  # e.g. N = 1 … 100
    for col, kind in enumerate(kinds, start=1):
        for s in groups[kind]:
            fig.add_trace(go.Scatter(x=curve.x, y=curve.series[s], mode="lines+markers", name=s), row=1, col=col)
        if kind == "loss" or len(kinds) == 1:
            for label, y in curve.hlines.items():
                fig.add_hline(y=y, line_dash="dash", line_color="firebrick", annotation_text=html.escape(label),
                              annotation_position="top left", row=1, col=col)
        # On a log axis plotly labels minor ticks too (2, 3, … 9 per decade); label only the x values.
        ticks = dict(tickvals=xs, ticktext=[f"{v:g}" for v in xs]) if log_x and len(xs) <= 16 else {}
        fig.update_xaxes(title_text=curve.xlabel, type="log" if log_x else None, row=1, col=col, **ticks)
    if len(kinds) == 1 and curve.ylabel:
        fig.update_yaxes(title_text=curve.ylabel)
    fig.update_layout(title=f"{stage}: {curve.name}", template="plotly_white", height=360,
                      margin=dict(l=50, r=20, t=60, b=40))
    return fig


# ---------------------------------------------------------------------------------------------
# The page


def stage_chart(rows: list[dict[str, Any]]):
    import plotly.graph_objects as go

    main = rows[0]["metric"] if rows else ""
    # One metric per chart: a reward_model row's pairwise accuracy is not on the task's scale.
    ok = [r for r in rows if r["value"] != "" and r["metric"] == main]
    lo = [r["value"] - r["ci_low"] if r["ci_low"] != "" else 0 for r in ok]
    hi = [r["ci_high"] - r["value"] if r["ci_high"] != "" else 0 for r in ok]
    fig = go.Figure(go.Bar(x=[r["stage"] for r in ok], y=[r["value"] for r in ok],
                           error_y=dict(type="data", array=hi, arrayminus=lo, visible=True),
                           text=[f"{r['value']:.3f}" for r in ok], textposition="inside",
                           hovertext=[f"{r['stage']}: {r['value']:.3f} [{r['ci_low']}, {r['ci_high']}], n={r['n']}"
                                      for r in ok], hoverinfo="text"))
    metric = ok[0]["metric"] if ok else ""
    fig.update_layout(title=f"{metric} by stage, with 95% CIs", template="plotly_white", height=360,
                      yaxis_title=metric, margin=dict(l=50, r=20, t=60, b=40))
    return fig


def _div(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, default_width="100%",
                       config={"displaylogo": False, "responsive": True})


def _e(x: Any) -> str:
    return html.escape(str(x))


def table_html(rows: list[dict[str, Any]]) -> str:
    k_way = any(r.get("chance") not in ("", None) for r in rows)
    head = ["stage", "type", "metric", "value [95% CI]", "n", *(["chance / majority", "unparsed"] if k_way else []),
            "Δ prev [95% CI]", "Δ zero_shot [95% CI]", "errors", "stop-hit", "tokens in/out", "cost $", "s", "flags"]
    out = ["<table class='stages'><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        value = "n/a" if r["value"] == "" else num(r["value"]) + (
            f" [{num(r['ci_low'])}, {num(r['ci_high'])}]" if r["ci_low"] != "" else "")
        cells = [stage_label(r), r["type"], r["metric"], value, r["n"]]
        if k_way:
            cells += [chance_text(r), "" if r.get("unparsed") in ("", None) else f"{r['unparsed']:.0%}"]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells))
        for key in ("diff_prev", "diff_zero"):
            cls = {1: "up", -1: "down", 0: ""}[diff_sign(r, key)]
            out.append(f"<td class='{cls}'>{_e(diff_text(r, key))}</td>")
        stop = "" if r["stop_hit_rate"] == "" else f"{r['stop_hit_rate']:.0%}"
        cells = [r["errors"], stop, f"{r['prompt_tokens']}/{r['completion_tokens']}", r["cost_usd"], r["seconds"]]
        out.append("".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td class='flags'>{_e(r['flags'])}</td></tr>")
        base = baseline_row(r)
        if base:  # e.g. rl's best-of-N with the same reward, right under it
            value = f"{num(base['value'])} [{num(base['ci_low'])}, {num(base['ci_high'])}]"
            cls = {1: "up", -1: "down", 0: ""}[diff_sign(base, "diff_prev")]
            out.append(f"<tr class='baseline'><td>{_e(base['stage'])}</td><td></td><td>{_e(base['metric'])}</td>"
                       f"<td>{_e(value)}</td><td>{_e(base['n'])}</td>" + "<td></td>" * (2 * k_way) +
                       f"<td class='{cls}'>{_e(diff_text(base, 'diff_prev'))}</td>" + "<td></td>" * 7 + "</tr>")
    out.append("</tbody></table>")
    if any(r.get("oracle") or "(oracle)" in str(r.get("baseline")) for r in rows):
        out.append(f"<p class='note'>{_e(ORACLE_NOTE)}</p>")
    return "".join(out)


def warnings_html(ev: Evidence) -> str:
    seen: dict[tuple[str, str], list[str]] = {}
    for r in ev.results:
        for g in r.guards:
            if g.level == "warn":
                seen.setdefault((g.name, g.message), []).append(r.stage)
    if not seen:
        return "<p>No guard warnings.</p>"
    items = [f"<li><b>{_e(', '.join(stages))}</b> · <code>{_e(name)}</code>: {_e(msg)}</li>"
             for (name, msg), stages in seen.items()]
    return "<ul class='warnings'>" + "".join(items) + "</ul>"


def climb_html(climb: dict[str, Any] | None) -> str:
    if not climb:
        return ""
    rows = "".join(f"<tr><td>{_e(r['stage'])}</td><td class='{_e(r['decision'])}'>{_e(r['decision'].replace('_', ' '))}"
                   f"</td><td>{_e(r['reason'])}</td></tr>" for r in climb.get("rungs", []))
    return (f"<section><h2>Climb</h2><p>Target: {_e(climb['by'])} ≥ {_e(climb['target'])} — "
            f"<b>{_e(climb.get('outcome', ''))}</b></p><table class='climb'><thead><tr><th>stage</th>"
            f"<th>decision</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></section>")


def build(folder: Path, *, atlas: bool = True, embed: str = "tfidf") -> str:
    """The report page's HTML."""
    from plotly.offline import get_plotlyjs

    if not (folder / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(folder),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    ev = Evidence.load(folder)
    rows = table_rows(ev)
    manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}
    with progress_bar("report: tables and curves", total=len(ev.results) + 2) as advance:
        steps = next_steps(ev)
        advance(1)
        chart = _div(stage_chart(rows))
        advance(1)
        curves = []
        for r in ev.results:
            curves += [f"<div class='plot'>{_div(curve_figure(r.stage, c))}</div>" for c in curves_of(r.extra)]
            advance(1)
    atlas_part = "<p>Left out (<code>--no-atlas</code>); <code>ladder atlas</code> draws it.</p>"
    if atlas:
        from ladder import atlas as atlas_mod

        try:
            atlas_part = atlas_mod.fragment(folder, how=embed)  # uses the page's plotly.js
        except LadderError as exc:  # e.g. stages without samples: the rest of the report still stands
            atlas_part = f"<p>No atlas: {_e(exc.render())}</p>"
    name = manifest.get("experiment") or folder.name
    description = str(ev.config.get("description") or "")
    meta = [f"{len(ev.results)} stages", f"n = {manifest.get('subsample', {}).get('n', '?')} test examples "
            f"(seed {manifest.get('subsample', {}).get('seed', '?')})", f"git {manifest.get('git_sha') or '—'}",
            f"report {time.strftime('%Y-%m-%d %H:%M')}"]
    steps_html = "".join(f"<li>{_e(s.text)} <span class='rule'>{_e(s.rule)}</span></li>" for s in steps) or \
        "<li>Nothing flagged — read some samples before deciding to climb further.</li>"
    return PAGE.format(
        title=_e(name), plotly=get_plotlyjs(), name=_e(name), description=_e(description),
        meta=" · ".join(_e(m) for m in meta), table=table_html(rows), chart=chart, climb=climb_html(ev.climb),
        steps=steps_html, warnings=warnings_html(ev),
        curves="".join(curves) or "<p>No stage recorded curves (best_of_n, sft and rl do).</p>", atlas=atlas_part)


def write(folder: Path, out: Path | None = None, **kwargs: Any) -> Path:
    page = build(folder, **kwargs)
    out = out or folder / "report.html"
    atomic_write(out, page)
    return out


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · ladder report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1500px;
       padding: 0 16px; color: #1d1d1f; }}
h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }}
.meta {{ color: #666; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, td.flags, table.climb td {{ text-align: left; }}
table.climb td, td.flags {{ white-space: normal; }}
.wide {{ overflow-x: auto; }}
td.up {{ color: #0a7a32; font-weight: 600; }} td.down {{ color: #b3261e; font-weight: 600; }}
td.flags {{ color: #9a6700; }} td.stop {{ color: #0a7a32; font-weight: 600; }}
.rule {{ color: #888; font-size: 12px; }} .warnings li {{ margin-bottom: 4px; }}
.plot {{ margin: 8px 0; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>{name}</h1>
<p>{description}</p>
<p class="meta">{meta}</p>
<section><h2>Stages</h2><div class="wide">{table}</div><div class="plot">{chart}</div></section>
{climb}
<section><h2>Next steps</h2><ul>{steps}</ul></section>
<section><h2>Guard warnings</h2>{warnings}</section>
<section><h2>Curves</h2>{curves}</section>
<section><h2>Sample atlas</h2>{atlas}</section>
</body></html>
"""
