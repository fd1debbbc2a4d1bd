"""`ladder report`: one self-contained HTML page per experiment (results/<exp>/report.html).

The page has the stage table with CIs and paired differences, a chart of the stages, the climb
record, the next steps, every guard warning, each stage's curves and the sample atlas. plotly.js
is inlined once, so the page opens offline.

Curves are found and drawn by ladder/report_curves.py; the sample browser is
ladder/report_samples.py.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from ladder.advice import next_steps
from ladder.errors import LadderError, NothingMeasured
from ladder.evidence import Evidence
from ladder.plotly_bundle import script_for
from ladder.progress import progress_bar
from ladder.report_curves import Curve, curve_figure, curves_of, stage_curves  # noqa: F401 - public here
from ladder.store import atomic_write, read_json
from ladder.table import COLUMNS, ORACLE_NOTE, baseline_row, chance_text, diff_sign, diff_text, num, stage_label, table_rows

# ---------------------------------------------------------------------------------------------
# The page


def stage_chart(rows: list[dict[str, Any]]):
    """The stages' values as bars with 95% CI whiskers; a stage's baseline (rl: best-of-N, same
    reward) as its own bar after it; chance as a dashed line, the majority class's share as a dotted
    one. Oracle bars are hatched and lighter."""
    import plotly.graph_objects as go

    main = rows[0]["metric"] if rows else ""
    # One metric per chart: a reward_model row's pairwise accuracy is not on the task's scale.
    bars = []
    for r in rows:
        if r["metric"] != main:
            continue
        if r["value"] != "":
            bars.append({**r, "label": stage_label(r), "oracle": _oracle(r)})
        base = baseline_row(r)
        if base and base["value"] != "":
            bars.append({**base, "label": base["stage"].strip(), "oracle": "(oracle)" in str(r.get("baseline"))})
    lo = [b["value"] - b["ci_low"] if b["ci_low"] != "" else 0 for b in bars]
    hi = [b["ci_high"] - b["value"] if b["ci_high"] != "" else 0 for b in bars]
    fig = go.Figure(go.Bar(
        x=[b["label"] for b in bars], y=[b["value"] for b in bars],
        marker=dict(color=["#9ecae1" if b["oracle"] else "#3182bd" for b in bars],
                    pattern=dict(shape=["/" if b["oracle"] else "" for b in bars], fgcolor="#3182bd")),
        error_y=dict(type="data", array=hi, arrayminus=lo, visible=True, color="#333"),
        # At the foot of the bar: a label at the top sits under the CI whisker.
        text=[f"{b['value']:.3f}" for b in bars], textposition="inside", insidetextanchor="start",
        textfont=dict(color=["#08306b" if b["oracle"] else "white" for b in bars]),
        hovertext=[f"{b['label']}: {b['value']:.3f} [{b['ci_low']}, {b['ci_high']}], n={b['n']}" for b in bars],
        hoverinfo="text", showlegend=False))
    # Chance (1/K) and, beside it, the majority class's share: a model answering the commonest label
    # to everything scores the latter, so a bar at that line has learned nothing either.
    lines = {}
    for key, name, color, dash in (("chance", "chance", "firebrick", "dash"),
                                   ("majority", "majority class", "darkorange", "dot")):
        levels = [r[key] for r in rows if r["metric"] == main and r.get(key) not in ("", None)]
        if levels:
            lines[key] = (name, color, dash, sum(levels) / len(levels))
    for key, (name, color, dash, level) in lines.items():
        fig.add_hline(y=level, line_dash=dash, line_color=color)
        # Labelled in the right margin (inside the plot the label would sit on a bar); when both
        # lines are drawn, the upper one's label goes above its line and the lower one's below.
        other = [v[3] for k, v in lines.items() if k != key]
        anchor = "middle" if not other else "bottom" if level >= other[0] else "top"
        fig.add_annotation(text=f"{name}<br>{level:.3f}", x=1, xref="paper", xanchor="left", y=level,
                           yanchor=anchor, showarrow=False, font=dict(color=color))
    if any(b["oracle"] for b in bars):
        fig.add_annotation(text="hatched: oracle — reads the test answers (an upper bound)", showarrow=False,
                           xref="paper", yref="paper", x=1, y=1.08, xanchor="right", font=dict(color="#555"))
    fig.update_layout(title=f"{main} by stage, with 95% CIs", template="plotly_white", height=380,
                      yaxis_title=main, yaxis_rangemode="tozero", margin=dict(l=50, r=70, t=60, b=40))
    return fig


def _oracle(row: dict[str, Any]) -> bool:
    return row.get("oracle") in (True, "True", "true")


def _div(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, default_width="100%",
                       config={"displaylogo": False, "responsive": True})


def _e(x: Any) -> str:
    return html.escape(str(x))


def table_html(rows: list[dict[str, Any]]) -> str:
    k_way = any(r.get("chance") not in ("", None) for r in rows)
    # Columns that would repeat themselves are left out so the table fits a 1400 px page: the
    # metric when every row has the same one (it heads the value column instead), and the type,
    # shown small beside a stage only where it differs from the name (few_shot_max: few_shot).
    metrics = {r["metric"] for r in rows}
    mixed = len(metrics) > 1
    variants = any("diff_base" in r for r in rows)  # a variants experiment's combined rows
    value_head = f"{'value' if mixed else next(iter(metrics), 'value')} [95% CI]"
    # Further metrics (`metrics:`), each beside the value with its CI.
    extra = [k for k in (rows[0] if rows else {}) if k not in COLUMNS and f"{k}_ci_low" in rows[0]]
    head = ["stage", *(["metric"] if mixed else []), value_head, *(f"{k} [95% CI]" for k in extra), "n",
            *(["chance / majority", "unparsed"] if k_way else []), "Δ prev [95% CI]", "Δ zero_shot [95% CI]",
            *(["Δ baseline variant [95% CI]", "MDE"] if variants else []), "errors", "stop-hit", "tokens in/out", "cost $", "s", "flags"]
    # Long headings on two lines: a heading's one-line width would set its column's.
    out = ["<table class='stages'><thead><tr>",
           *(f"<th>{'<br>'.join(_e(part) for part in _two_lines(h))}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        value = "n/a" if r["value"] == "" else _e(num(r["value"])) + (
            f" <span class='ci'>[{num(r['ci_low'])}, {num(r['ci_high'])}]</span>" if r["ci_low"] != "" else "")
        kind = f" <span class='type'>{_e(r['type'])}</span>" if r["type"] != r["stage"] else ""
        cells = [r["n"]]
        for k in extra:
            out_cell = "" if r[k] == "" else num(r[k]) + (
                f" [{num(r[k + '_ci_low'])}, {num(r[k + '_ci_high'])}]" if r[k + "_ci_low"] != "" else "")
            cells.insert(len(cells) - 1, out_cell)
        if k_way:
            cells += [chance_text(r), "" if r.get("unparsed") in ("", None) else f"{r['unparsed']:.0%}"]
        out.append(f"<tr{' class=oracle' if _oracle(r) else ''}><td>{_e(stage_label(r))}{kind}</td>"
                   + (f"<td>{_e(r['metric'])}</td>" if mixed else "")
                   + f"<td class='num'>{value}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cells))
        for key in ("diff_prev", "diff_zero"):
            cls = {1: "up", -1: "down", 0: ""}[diff_sign(r, key)]
            out.append(f"<td class='num {cls}'>{_diff_html(diff_text(r, key))}</td>")
        if variants:
            cls = {1: "up", -1: "down", 0: ""}[diff_sign(r, "diff_base")]
            mde = r.get("diff_base_mde")
            out.append(f"<td class='num {cls}'>{_diff_html(diff_text(r, 'diff_base'))}</td>"
                       f"<td>{'' if mde in ('', None) else '±' + num(mde)}</td>")
        stop = "" if r["stop_hit_rate"] == "" else f"{r['stop_hit_rate']:.0%}"
        cells = [r["errors"], stop, f"{r['prompt_tokens']}/{r['completion_tokens']}", r["cost_usd"], r["seconds"]]
        out.append("".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td class='flags'>{_e(r['flags'])}</td></tr>")
        base = baseline_row(r)
        if base:  # e.g. rl's best-of-N with the same reward, right under it
            value = f"{num(base['value'])} <span class='ci'>[{num(base['ci_low'])}, {num(base['ci_high'])}]</span>"
            cls = {1: "up", -1: "down", 0: ""}[diff_sign(base, "diff_prev")]
            out.append(f"<tr class='baseline'><td>{_e(base['stage'])}</td>" +
                       (f"<td>{_e(base['metric'])}</td>" if mixed else "") +
                       f"<td class='num'>{value}</td>" + "<td></td>" * len(extra) + f"<td>{_e(base['n'])}</td>"
                       + "<td></td>" * (2 * k_way) +
                       f"<td class='num {cls}'>{_diff_html(diff_text(base, 'diff_prev'))}</td>"
                       + "<td></td>" * 7 + "</tr>")
    out.append("</tbody></table>")
    if any(r.get("oracle") or "(oracle)" in str(r.get("baseline")) for r in rows):
        out.append(f"<p class='note'>{_e(ORACLE_NOTE)}</p>")
    return "".join(out)


def _two_lines(heading: str) -> list[str]:
    """'Δ prev [95% CI]' → ['Δ prev', '[95% CI]']; 'tokens in/out' → ['tokens', 'in/out']."""
    if " [" in heading:
        head, _, rest = heading.partition(" [")
        return [head, "[" + rest]
    return heading.split(" ", 1) if len(heading) > 8 and " " in heading else [heading]


def _diff_html(text: str) -> str:
    """'+0.330 [+0.277, +0.384]' with its CI in a span that may wrap under the value as a whole."""
    head, sep, ci = text.partition(" [")
    return _e(head) + (f" <span class='ci'>[{_e(ci)}</span>" if sep else "")


def warnings_html(ev: Evidence) -> str:
    seen: dict[tuple[str, str], list[str]] = {}
    for r in ev.results:
        for g in r.guards:
            if g.level == "warn":
                seen.setdefault((g.name, g.message), []).append(r.stage)
    from ladder.labels import agreement_lines

    agreement = "".join(f"<li>{_e(line)}</li>" for line in agreement_lines(ev.results))
    agreement = f"<p>Agreement of the judged metrics:</p><ul class='agreement'>{agreement}</ul>" if agreement else ""
    if not seen:
        return "<p>No guard warnings.</p>" + agreement
    items = [f"<li><b>{_e(', '.join(stages))}</b> · <code>{_e(name)}</code>: {_e(msg)}</li>"
             for (name, msg), stages in seen.items()]
    return "<ul class='warnings'>" + "".join(items) + "</ul>" + agreement


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
    from ladder.report_samples import samples_html

    if not (folder / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(folder),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    from ladder import variants_folder

    info = variants_folder.combined_info(folder)
    if info:  # a variants experiment: every variant's rows, labelled <variant>/<stage>
        combined, baseline = variants_folder.rows(folder)  # NothingMeasured when none finished
        rows = [{**r, "stage": ("★ " if r["best"] else "") + f"{r['variant']}/{r['stage']}"} for r in combined]
        ev = variants_folder.flat_evidence(folder)
        first = folder / "variants" / variants_folder.finished(folder, info[0])[0]
        manifest = read_json(first / "manifest.json") if (first / "manifest.json").exists() else {}
    else:
        ev = Evidence.load(folder)
        if not ev.results:  # an empty page is not a result
            raise NothingMeasured("summary.csv lists no finished stage", where=str(folder),
                                  fix="run the experiment's stages first (`ladder run EXP.yaml`)")
        rows = table_rows(ev)
        manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}
    with progress_bar("report: tables and curves", total=len(ev.results) + 2) as advance:
        steps = variants_folder.steps(folder) if info else next_steps(ev)
        advance(1)
        chart = _div(stage_chart(rows))
        advance(1)
        curves = []
        for r in ev.results:
            curves += [f"<div class='plot'>{_div(curve_figure(r.stage, c))}</div>" for c in stage_curves(r)]
            advance(1)
    atlas_part = "<p>Left out (<code>--no-atlas</code>); <code>ladder atlas</code> draws it.</p>"
    if atlas:
        from ladder import atlas as atlas_mod

        try:
            atlas_part = atlas_mod.fragment(folder, how=embed)  # uses the page's plotly.js
        except LadderError as exc:  # e.g. stages without samples: the rest of the report still stands
            atlas_part = f"<p>No atlas: {_e(exc.render())}</p>"
    name = folder.name if info else manifest.get("experiment") or folder.name
    description = str(ev.config.get("description") or "")
    meta = [f"{len(ev.results)} stages" + (f" in {len(variants_folder.finished(folder, info[0]))} variants "
                                           f"(baseline {info[1]})" if info else ""), f"n = {manifest.get('subsample', {}).get('n', '?')} test examples "
            f"(seed {manifest.get('subsample', {}).get('seed', '?')})", f"git {manifest.get('git_sha') or '—'}",
            f"report {time.strftime('%Y-%m-%d %H:%M')}"]
    steps_html = "".join(f"<li>{_e(s.text)} <span class='rule'>{_e(s.rule)}</span></li>" for s in steps) or \
        "<li>Nothing flagged — read some samples before deciding to climb further.</li>"
    return PAGE.format(
        title=_e(name), plotly=script_for(chart + "".join(curves) + atlas_part), name=_e(name), description=_e(description),
        meta=" · ".join(_e(m) for m in meta), table=table_html(rows), chart=chart, climb=climb_html(ev.climb),
        steps=steps_html, warnings=warnings_html(ev), samples=samples_html(ev), confusion=_confusion_section(ev),
        curves="".join(curves) or "<p>No stage recorded curves (best_of_n, sft and rl do).</p>", atlas=atlas_part)


def _confusion_section(ev: Evidence) -> str:
    from ladder.report_confusion import confusion_html

    inner = confusion_html(ev)
    return f"<section><h2>Confusion matrices</h2>{inner}</section>" if inner else ""


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
th, td {{ padding: 4px 6px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, td.flags, table.climb td {{ text-align: left; }}
table.climb td, td.flags {{ white-space: normal; }}
.wide {{ overflow-x: auto; }}
td.up {{ color: #0a7a32; font-weight: 600; }} td.down {{ color: #b3261e; font-weight: 600; }}
td.flags {{ color: #9a6700; }} td.stop {{ color: #0a7a32; font-weight: 600; }}
.rule {{ color: #888; font-size: 12px; }} .warnings li {{ margin-bottom: 4px; }}
.plot {{ margin: 8px 0; }}
table.stages th, td.num {{ white-space: normal; }} .ci {{ white-space: nowrap; font-size: 12px; }}
.type {{ color: #888; font-size: 11px; }} td.flags:not(:empty) {{ min-width: 8em; max-width: 28em; }}
tr.baseline td {{ color: #555; font-style: italic; }}
tr.oracle td {{ background: repeating-linear-gradient(135deg, #f4f8fc 0 6px, #e8f0f8 6px 8px); }}
.samples .controls {{ display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin: 8px 0; }}
.samples .count {{ font-weight: 600; }}
.sample-table {{ max-height: 640px; overflow: auto; border: 1px solid #eee; }}
table.samples {{ width: 100%; }} table.samples th {{ position: sticky; top: 0; background: #fafafa; }}
table.samples td, table.samples th {{ text-align: left; }}
table.samples td.input {{ white-space: normal; min-width: 16em; }}
td.cell {{ cursor: pointer; }} td.cell:hover {{ outline: 1px solid #888; }}
td.cell.picked {{ outline: 2px solid #1d1d1f; outline-offset: -2px; font-weight: 600; }}
.samples .pager {{ white-space: nowrap; }}
@media (max-width: 1100px) {{
  /* A narrow window (800 px): the stage table fits rather than hiding columns behind a scrollbar —
     tighter cells, and every cell (a CI included) may wrap. */
  body {{ padding: 0 8px; }}
  table.stages {{ font-size: 12px; }} table.stages th, table.stages td {{ padding: 3px 3px; white-space: normal; }}
  table.stages .ci {{ white-space: normal; font-size: 11px; }} td.flags:not(:empty) {{ min-width: 5em; }}
}}
td.good {{ background: #e6f4ea; }} td.bad {{ background: #fce8e6; }} .score {{ color: #666; font-size: 11px; }}
.detail {{ border: 1px solid #ccc; padding: 8px 12px; margin-top: 8px; background: #fcfcfc; }}
.detail pre {{ white-space: pre-wrap; margin: 2px 0 6px; font-size: 12px; }}
.confusions {{ display: flex; flex-wrap: wrap; gap: 8px 28px; }} .confusion h3 {{ margin: 8px 0 4px; font-size: 14px; }}
table.confusion td {{ min-width: 2.6em; background: rgba(49, 130, 189, var(--a)); }}
table.confusion td.diag {{ background: rgba(10, 122, 50, var(--a)); font-weight: 600; }}
table.confusion td.unparsed {{ background: rgba(179, 38, 30, var(--a)); }} table.confusion td.total {{ color: #666; }}
.detail td {{ text-align: left; vertical-align: top; }} tr.selected td {{ background: #fff4c2; font-weight: 600; }}
</style>
{plotly}
</head><body>
<h1>{name}</h1>
<p>{description}</p>
<p class="meta">{meta}</p>
<section><h2>Stages</h2><div class="wide">{table}</div><div class="plot">{chart}</div></section>
{confusion}
{climb}
<section><h2>Next steps</h2><ul>{steps}</ul></section>
<section><h2>Guard warnings</h2>{warnings}</section>
<section><h2>Curves</h2>{curves}</section>
<section><h2>Samples</h2>{samples}</section>
<section><h2>Sample atlas</h2>{atlas}</section>
</body></html>
"""
