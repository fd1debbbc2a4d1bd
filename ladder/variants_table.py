"""The combined table of a variants experiment: each variant's rows with its paired difference
from the baseline variant (Holm-adjusted when a stage has several comparisons), the stage's best
variant, written as results/<exp>/summary.csv and printed. ladder/variants.py runs the variants
(and re-exports these names); this module only reads their finished folders.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ladder.stats import holm, t_p_value

ALPHA = 0.05
DIFF_BASE = ["diff_base", "diff_base_ci_low", "diff_base_ci_high", "diff_base_n", "diff_base_mde", "diff_base_p",
             "diff_base_p_holm", "diff_base_adjust"]
BEST = ["best", "best_p_holm"]
"""`best`: True on the variant with the highest value of its stage when its lead over every other
variant is significant after Holm (ladder/stats.py: best_variants); `best_p_holm`: the largest of those
Holm-adjusted p-values (on the best row only)."""


def _interval(mean: float, sd: float, n: int, alpha: float) -> tuple[float, float]:
    from ladder.stats import t_quantile  # the Δ columns' own t: one way for every paired interval

    if n < 2 or math.isnan(sd):
        return float("nan"), float("nan")
    half = t_quantile(n - 1, alpha) * sd / math.sqrt(n)
    return mean - half, mean + half


def level_mde(sd: float, n: int, alpha: float) -> float:
    """The smallest difference a comparison at level `alpha` (its Holm level) detects at 80% power:
    (z_{1−α/2} + z_{0.8})·sd/√n (ladder/power.py at α = 0.05). 0 when every per-example difference
    is 0 (identical outputs), so "too small to detect" (Δ inside ±MDE > 0) and "no difference at
    all" (MDE 0) read apart."""
    from statistics import NormalDist

    from ladder.power import Z80

    if n < 2 or math.isnan(sd):
        return float("nan")
    return (NormalDist().inv_cdf(1 - alpha / 2) + Z80) * sd / math.sqrt(n)


def variant_diffs(scores: dict[str, dict[str, dict[str, float]]], baseline: str,
                  alpha: float = ALPHA, runs: dict[str, dict[str, str]] | None = None
                  ) -> dict[tuple[str, str], dict[str, Any]]:
    """Paired differences from the baseline variant, per stage: `scores` is variant -> stage ->
    example id -> score. Returns (variant, stage) -> the DIFF_BASE columns (none for the baseline
    itself, or a stage the baseline lacks). Each difference is taken over the example ids both
    scored; with more than one comparison of a stage its intervals and p-values are Holm-adjusted.

    `runs` (variant -> stage -> run id) says which variants hold the same run: a sweep over a later
    stage repeats the unchanged earlier runs in every variant. Holm counts each distinct (run,
    baseline run) pair once, and every variant holding it shares its one adjusted result; a variant
    whose run *is* the baseline's is no comparison (its columns say `same run`, no p, not in m)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    stages = list(dict.fromkeys(s for by_stage in scores.values() for s in by_stage))
    base = scores.get(baseline, {})
    runs = runs or {}
    for stage in stages:
        if stage not in base:
            continue
        base_run = runs.get(baseline, {}).get(stage)
        comps: dict[Any, tuple] = {}  # distinct run -> (n, mean, sd, p); without run ids each variant is its own
        holders: dict[Any, list[str]] = {}
        for variant, by_stage in scores.items():
            if variant == baseline or stage not in by_stage:
                continue
            run = runs.get(variant, {}).get(stage)
            if run is not None and run == base_run:
                out[(variant, stage)] = {"diff_base": 0.0, "diff_base_ci_low": 0.0, "diff_base_ci_high": 0.0,
                                         "diff_base_n": len(base[stage]), "diff_base_p": "",
                                         "diff_base_p_holm": "", "diff_base_adjust": "same run"}
                continue
            key = ("run", run) if run is not None else ("variant", variant)
            holders.setdefault(key, []).append(variant)
            if key not in comps:
                a, b = by_stage[stage], base[stage]
                d = [a[i] - b[i] for i in a if i in b]
                comps[key] = (len(d), *(t_p_value(d) if d else (float("nan"),) * 3))
        keys = list(comps)
        m = len(keys)
        ps = [comps[k][3] for k in keys]
        adjusted, levels = holm(ps, alpha) if m > 1 else (ps, [alpha] * m)
        for key, p_adj, level in zip(keys, adjusted, levels):
            n, mean, sd, p = comps[key]
            lo, hi = _interval(mean, sd, n, level)
            for variant in holders[key]:
                out[(variant, stage)] = {"diff_base": mean, "diff_base_ci_low": lo, "diff_base_ci_high": hi,
                                         "diff_base_n": n, "diff_base_mde": level_mde(sd, n, level),
                                         "diff_base_p": p,
                                         "diff_base_p_holm": p_adj if m > 1 else "",
                                         "diff_base_adjust": "holm" if m > 1 else ""}
    return out


def combined_rows(folder: Path, names: list[str], baseline: str) -> list[dict[str, Any]]:
    """One row per finished variant and stage (summary.csv's columns, `variant` first, then the
    diff_base columns), from whatever variants have results under folder/variants/."""
    from ladder.evidence import Evidence
    from ladder.table import BASELINE, _round, table_rows
    from ladder.stats import best_variants

    scores: dict[str, dict[str, dict[str, float]]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    runs: dict[str, dict[str, str]] = {}  # the same run in several variants is one comparison (Holm)
    for name in names:
        sub = folder / "variants" / name
        if not (sub / "summary.csv").exists():
            continue
        ev = Evidence.load(sub)
        rows[name] = table_rows(ev)
        scores[name] = {r.stage: ev.scores(r) for r in ev.results}
        runs[name] = {r.stage: r.run_id for r in ev.results}
    diffs = variant_diffs(scores, baseline, runs=runs)
    best = best_variants(scores, {(name, r["stage"]): r["value"] for name, stage_rows in rows.items()
                                  for r in stage_rows})
    out = []
    for name, stage_rows in rows.items():
        for row in stage_rows:
            d = diffs.get((name, row["stage"]), {})
            b = best.get(row["stage"])
            # One family of baseline columns here: diff_base_* (the baseline *variant*). A stage's own
            # baseline line (rl's best-of-N, BASELINE) stays in the variant's own summary.csv.
            out.append({"variant": name, **{k: v for k, v in row.items() if k not in BASELINE},
                        **{k: _round(d.get(k, ""), 6) for k in DIFF_BASE},
                        "best": bool(b and b[0] == name), "best_p_holm": _round(b[1], 6) if b and b[0] == name else ""})
    return out


def write_combined(folder: Path, names: list[str], baseline: str) -> list[dict[str, Any]]:
    from ladder.store import atomic_write, write_json
    from ladder.table import BASELINE, COLUMNS

    rows = combined_rows(folder, names, baseline)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["variant", *(c for c in COLUMNS if c not in BASELINE), *DIFF_BASE,
                                             *BEST], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "summary.csv", buf.getvalue())
    # What `ladder compare/report/atlas/log` and ladder.load need to read the folder back whole.
    write_json(folder / "variants.json", {"baseline": baseline, "variants": names})
    return rows


def print_combined(rows: list[dict[str, Any]], baseline: str, title: str) -> None:
    """The combined table, grouped by stage: each variant's value, its own Δ zero_shot (within the
    variant), and its difference from the baseline variant on the same examples with that
    difference's MDE; ★ marks a stage's best variant when its lead over every other is significant
    after Holm."""
    from rich.table import Table

    from ladder.progress import stdout_console
    from ladder.table import ORACLE_NOTE, _is_oracle, _value, diff_sign, diff_text, num

    console = stdout_console()
    holm_used = any(r.get("diff_base_adjust") == "holm" for r in rows)
    table = Table(title=title, title_justify="left")
    for col, justify in (("stage", "left"), ("variant", "left"), ("metric", "left"), ("value [95% CI]", "right"),
                         ("n", "right"), ("Δ zero_shot [95% CI]", "right"),
                         (f"Δ baseline [{'Holm-adj. ' if holm_used else ''}95% CI]", "right"), ("MDE", "right"),
                         ("p" + (" (Holm)" if holm_used else ""), "right"), ("flags", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "flags")
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    for s_i, stage in enumerate(stages):
        group = [r for r in rows if r["stage"] == stage]
        for j, row in enumerate(group):
            style = {1: "green", -1: "red", 0: ""}[diff_sign(row, "diff_base")]
            text = diff_text(row, "diff_base") if row["variant"] != baseline else "(baseline)"
            if row["variant"] != baseline and row.get("diff_base_mde") == 0 and row.get("diff_base") == 0:
                text = "identical outputs"  # every per-example difference is 0: not "too small to detect"
            p = row.get("diff_base_p_holm") if holm_used else row.get("diff_base_p")
            mde = row.get("diff_base_mde")
            zero = {1: "green", -1: "red", 0: ""}[diff_sign(row, "diff_zero")]
            label = f"{stage} [magenta](oracle)[/magenta]" if _is_oracle(row) else stage
            best = row.get("best") in (True, "True", "true")
            table.add_row(label if j == 0 else "", ("★ " if best else "") + row["variant"], row["metric"], _value(row),
                          str(row["n"]), f"[{zero}]{diff_text(row, 'diff_zero')}[/{zero}]" if zero
                          else diff_text(row, "diff_zero"),
                          f"[{style}]{text}[/{style}]" if style else text,
                          "" if mde in ("", None) or (isinstance(mde, float) and math.isnan(mde)) else f"±{num(mde)}",
                          "" if p in ("", None) or (isinstance(p, float) and math.isnan(p)) else f"{float(p):.3g}",
                          f"[yellow]{row['flags']}[/yellow]" if row.get("flags") else "",
                          end_section=j == len(group) - 1 and s_i < len(stages) - 1)
    console.print(table)
    console.print(f"Δ baseline: each variant minus {baseline} on the same examples (paired t)"
                  + ("; intervals and p-values Holm-adjusted for the comparisons of each stage with the "
                     "baseline (step-down levels 0.05/(m−i))" if holm_used else "")
                  + ". MDE: the smallest Δ baseline that comparison detects at 80% power; a Δ inside ±MDE is "
                    "too small to detect, not shown absent. Δ zero_shot: within the variant.", highlight=False)
    if any(r.get("best") in (True, "True", "true") for r in rows):
        console.print("★ the stage's best variant: its lead over every other variant is significant "
                      "(paired t, Holm-adjusted over those comparisons, α = 0.05)", highlight=False)
    if any(_is_oracle(r) for r in rows):
        console.print(f"[magenta](oracle)[/magenta]{ORACLE_NOTE.removeprefix('(oracle)')}", highlight=False)
