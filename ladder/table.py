"""The comparison table: one row per stage, as summary.csv, summary.md and a rich table.

Beside each stage's value and CI are its paired differences (ladder/evidence.py): against the row
above (`diff_prev`) and against zero_shot (`diff_zero`), on the same examples, with 95% CIs.
summary.md ends with the rule-based next steps."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.guards import UNPARSED_WARN
from ladder.stats import IDENTICAL, identical, num  # noqa: F401 - num: where report and tests have always imported it from
from ladder.store import atomic_write
from ladder.types import StageResult

if TYPE_CHECKING:
    from ladder.evidence import Evidence

# `_mde`: the smallest difference that comparison could detect at 80% power (ladder/power.py).
DIFFS = [f"{d}{part}" for d in ("diff_prev", "diff_zero") for part in ("", "_ci_low", "_ci_high", "_n", "_mde")]
# A stage may carry its own baseline measured on the same examples (rl: best-of-N with the same
# reward): shown on a line under the stage, with the stage's paired difference from it.
BASELINE = ["baseline", "baseline_value", "baseline_ci_low", "baseline_ci_high", "baseline_n",
            "baseline_diff", "baseline_diff_ci_low", "baseline_diff_ci_high"]
# K-way metrics (choice, choice_prob): chance (mean 1/K over the scored examples), the majority
# class's share of them, and the share of answers that were none of the choices.
K_WAY = ["chance", "majority", "unparsed"]
COLUMNS = ["stage", "type", "metric", "value", "ci_low", "ci_high", "n", *DIFFS, *BASELINE, "errors",
           "stop_hit_rate", "prompt_tokens", "completion_tokens", "cost_usd", "seconds", "flags", "checks",
           "oracle", "selected_by_metric", *K_WAY, "judge_tokens", "run_id"]
# `selected_by_metric`: best_of_n's scorer or rl's reward is the very scorer that scores the row
# (optimistic); `judge_tokens`: tokens the metric's own model calls (a judge's) took, in and out.
# A row's further metrics (`metrics:`) follow run_id as <name>, <name>_ci_low, <name>_ci_high.
ORACLE_NOTE = ("(oracle): reads the test examples' gold answers to pick its output — an upper bound, "
               "not a method you can deploy")
# Checks every stage has, shown in their own columns (n, stop-hit): not repeated under "checks".
_ALWAYS = {"subsample", "stop_hit"}
FLOATS = ["value", "ci_low", "ci_high", "stop_hit_rate", *K_WAY,
          *(c for c in DIFFS if not c.endswith("_n")), *(c for c in BASELINE[1:] if c != "baseline_n")]


def row_of(r: StageResult) -> dict[str, Any]:
    s = r.stats
    return {
        "stage": r.stage, "type": r.type, "metric": r.metric_name,
        "value": _round(r.metric.value, 6), "ci_low": _round(r.metric.ci_low, 6),
        "ci_high": _round(r.metric.ci_high, 6), "n": r.metric.n,
        "errors": s.errors, "stop_hit_rate": _round(s.stop_hit_rate),
        "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
        "cost_usd": _round(s.cost_usd, 6), "seconds": _round(s.seconds, 2),
        "flags": "; ".join(g.name for g in r.guards if g.level == "warn"),
        # Stage-specific guardrails that passed (e.g. sft's chance_loss): a check that ran and
        # passed is worth seeing, not just one that failed.
        "checks": "; ".join(f"{g.name} ok" for g in r.guards if g.level == "ok" and g.name not in _ALWAYS),
        "run_id": r.run_id,
        "oracle": r.oracle,
        "selected_by_metric": r.selected_by_metric,
        "judge_tokens": s.metric_prompt_tokens + (s.metric_completion_tokens or 0)
        if s.metric_prompt_tokens is not None else "",
        "chance": _round(s.chance, 6), "majority": _round(s.majority, 6), "unparsed": _round(s.unparsed, 6),  # K_WAY
        **extra_metric_cells(r),
        **baseline_of(r),
    }


def extra_metric_cells(r: StageResult) -> dict[str, Any]:
    """The row's further metrics (`metrics:` after the first): <name>, <name>_ci_low, <name>_ci_high."""
    out: dict[str, Any] = {}
    for name, m in (r.extra.metrics or {}).items():
        out.update({name: _round(m.value, 6), f"{name}_ci_low": _round(m.ci_low, 6),
                    f"{name}_ci_high": _round(m.ci_high, 6)})
    return out


def extra_metric_columns(results: list[StageResult]) -> list[str]:
    """The summary.csv columns of every further metric any row has, in the order they are declared."""
    names = dict.fromkeys(n for r in results for n in (r.extra.metrics or {}))
    return [c for n in names for c in (n, f"{n}_ci_low", f"{n}_ci_high")]


def baseline_of(r: StageResult) -> dict[str, Any]:
    """The BASELINE columns from the stage's typed `baseline` (StageResult.baseline); blank when
    the stage has none."""
    b = r.baseline
    if b is None:
        return {k: "" for k in BASELINE}
    m, d = b.metric, b.diff
    return {"baseline": b.label + (" (oracle)" if b.oracle else ""), "baseline_value": _round(m.value, 6),
            "baseline_ci_low": _round(m.ci_low, 6), "baseline_ci_high": _round(m.ci_high, 6), "baseline_n": m.n,
            "baseline_diff": _round(d.value, 6) if d else "", "baseline_diff_ci_low": _round(d.ci_low, 6) if d else "",
            "baseline_diff_ci_high": _round(d.ci_high, 6) if d else ""}


def baseline_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """The line shown under a stage with a baseline. Its Δ prev is what Δ prev always is — this
    line minus the one above — so baseline − stage, the stage's paired difference negated."""
    if not row.get("baseline"):
        return None
    d = {k: -row[k] if isinstance(row.get(k), float) else "" for k in ("baseline_diff", "baseline_diff_ci_low",
                                                                        "baseline_diff_ci_high")}
    return {"stage": f" ↳ {row['baseline']}", "metric": row["metric"], "value": row["baseline_value"],
            "ci_low": row["baseline_ci_low"], "ci_high": row["baseline_ci_high"], "n": row["baseline_n"],
            "diff_prev": d["baseline_diff"], "diff_prev_ci_low": d["baseline_diff_ci_high"],
            "diff_prev_ci_high": d["baseline_diff_ci_low"]}


def _round(x: Any, digits: int = 4) -> Any:
    if isinstance(x, float):
        return "" if math.isnan(x) else round(x, digits)
    return "" if x is None else x


def table_rows(ev: Evidence) -> list[dict[str, Any]]:
    """One row per stage, from the StageResults (metrics.json) and their paired differences: what
    summary.csv holds and every table (terminal, summary.md, report) shows. A column a row has no
    value for is "" (as in the CSV)."""
    from ladder.evidence import paired_columns
    from ladder.power import mde_columns

    from ladder.labels import agreement_cells, agreement_columns, attach

    attach(ev)  # a judged metric's agreement with people's labels (labels.jsonl), and its guards
    diffs = paired_columns(ev)
    extra = extra_metric_columns(ev.results) + agreement_columns(ev.results)
    return [{**dict.fromkeys(COLUMNS + extra, ""), **row_of(r), **agreement_cells(r),
             **{k: _round(v) for k, v in {**diffs[r.stage], **mde_columns(diffs[r.stage])}.items()}}
            for r in ev.results]


def write_summary(folder: Path, results: list[StageResult]) -> None:
    from ladder.advice import next_steps, steps_markdown
    from ladder.evidence import Evidence

    ev = Evidence.load(folder, results)
    rows = table_rows(ev)
    buf = io.StringIO()
    from ladder.labels import agreement_columns  # a judged metric's agreement with labels, when it has any

    writer = csv.DictWriter(buf, fieldnames=COLUMNS + extra_metric_columns(ev.results) + agreement_columns(ev.results),
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "summary.csv", buf.getvalue())
    from ladder.labels import agreement_markdown

    atomic_write(folder / "summary.md", markdown(rows, results) + agreement_markdown(ev.results) + "\n"
                 + steps_markdown(next_steps(ev)))


def markdown(rows: list[dict[str, Any]], results: list[StageResult]) -> str:
    k_way = any(row.get("chance") != "" for row in rows)
    head = ["stage", "metric", "value [95% CI]", "n", *(["chance / majority", "unparsed"] if k_way else []),
            "Δ prev [95% CI]", "Δ zero_shot [95% CI]", "stop-hit", "tokens (prompt/out)", "cost $", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([
            stage_label(row), row["metric"], _value(row), str(row["n"]),
            *([chance_text(row), _pct(row.get("unparsed", ""))] if k_way else []), diff_text(row, "diff_prev"),
            diff_text(row, "diff_zero"), _pct(row["stop_hit_rate"]),
            f"{row['prompt_tokens']}/{row['completion_tokens']}", str(row["cost_usd"]), str(row["seconds"]),
        ]) + " |")
        base = baseline_row(row)
        if base:
            lines.append("| " + " | ".join([base["stage"], base["metric"], _value(base), str(base["n"]),
                                             *(["", ""] if k_way else []), diff_text(base, "diff_prev"),
                                             "", "", "", "", ""]) + " |")
    if any(_is_oracle(row) or "(oracle)" in str(row.get("baseline")) for row in rows):
        lines += ["", ORACLE_NOTE]
    seen: dict[tuple[str, str], list[str]] = {}
    for r in results:  # experiment-wide warnings (e.g. subsample size) once, naming their stages
        for g in r.guards:
            if g.level == "warn":
                seen.setdefault((g.name, g.message), []).append(r.stage)
    warnings = [f"- **{', '.join(stages) if len(stages) < len(results) or len(results) == 1 else 'all stages'}**"
                f" · {name}: {message}" for (name, message), stages in seen.items()]
    if warnings:
        lines += ["", "Warnings:", *warnings]
    return "\n".join(lines) + "\n"


def _value(row: dict[str, Any]) -> str:
    if row["value"] == "":
        return "n/a"
    ci = f" [{num(row['ci_low'])}, {num(row['ci_high'])}]" if row["ci_low"] != "" else ""
    return f"{num(row['value'])}{ci}"


def _is_oracle(row: dict[str, Any]) -> bool:
    return row.get("oracle") in (True, "True", "true")


def stage_label(row: dict[str, Any]) -> str:
    """The stage's name, with '(oracle)' after it when the row is an upper bound, '(selected by the
    metric)' when the scorer that picked or trained it is the one that scores it."""
    if _is_oracle(row):
        return f"{row['stage']} (oracle)"
    return f"{row['stage']} {SELECTED_NOTE}" if _is_selected(row) else row["stage"]


SELECTED_NOTE = "(selected by the metric)"


def _is_selected(row: dict[str, Any]) -> bool:
    return row.get("selected_by_metric") in (True, "True", "true")


def chance_text(row: dict[str, Any]) -> str:
    """'0.333 / 0.357': chance (mean 1/K) and the majority class's share; '' for other metrics."""
    if row.get("chance") in ("", None):
        return ""
    return f"{num(row['chance'])} / {num(row['majority'])}" if row.get("majority") not in ("", None) \
        else num(row["chance"])


def diff_text(row: dict[str, Any], key: str) -> str:
    """'+0.120 [+0.050, +0.190]' or '' when the row has no such comparison; IDENTICAL when every
    per-example difference is 0 (a zero-width '0.000 [0.000, 0.000]' would read as a measurement)."""
    if row.get(key) in ("", None):
        return ""
    if identical(row.get(key), row.get(key + "_ci_low"), row.get(key + "_ci_high")):
        return IDENTICAL
    ci = f" [{num(row[key + '_ci_low'], True)}, {num(row[key + '_ci_high'], True)}]" \
        if row.get(key + "_ci_low") != "" else ""
    return f"{num(row[key], True)}{ci}"


def diff_sign(row: dict[str, Any], key: str) -> int:
    """+1 when the CI is above 0, -1 when below, 0 when it straddles 0 (or is missing)."""
    lo, hi = row.get(key + "_ci_low"), row.get(key + "_ci_high")
    if lo in ("", None):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _pct(x: Any) -> str:
    return "" if x in ("", None) else f"{float(x):.0%}"


def read_summary(folder: Path) -> list[dict[str, Any]]:
    """summary.csv's rows as `table_rows` gives them (for scripts; ladder's own tables are built
    from the StageResults)."""
    with open(folder / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in FLOATS:  # older summaries lack the diff columns
            row[key] = float(row[key]) if row.get(key) not in ("", None) else ""
        row["oracle"] = _is_oracle(row)
        row["selected_by_metric"] = _is_selected(row)
    return rows


def print_table(rows: list[dict[str, Any]], title: str, wide: bool = False, console: Any = None) -> None:
    """The stage table on stdout, fitted to the terminal: every row's stage, value with its full CI,
    n and Δs are always shown whole. What does not fit is folded, in this order: flags and checks
    into a lettered list under the table, chance/majority/unparsed into one compact column, Δ prev
    and Δ zero_shot into one column (two lines), then chance into a list under the table. Stop-hit,
    tokens, cost and seconds are a second table, with `wide`."""
    from ladder.progress import stdout_console

    console = console or stdout_console()
    width = console.width
    metrics = list(dict.fromkeys(str(r["metric"]) for r in rows))
    if len(metrics) == 1:  # one metric: named in the title, not repeated on every row
        title = f"{title}  · {metrics[0]}"
    tiers = [dict(flags=True, k_way="columns", diffs="columns"), dict(flags=False, k_way="columns", diffs="columns"),
             dict(flags=False, k_way="compact", diffs="columns"), dict(flags=False, k_way="compact", diffs="stacked"),
             dict(flags=False, k_way="notes", diffs="stacked")]

    def needs(table: Any) -> int:  # measured unclamped: the width the table needs with no cell wrapped or cut
        return console.measure(table, options=console.options.update_width(10_000)).maximum

    for tier in tiers:
        table, notes = _stage_table(rows, title, multi_metric=len(metrics) > 1, **tier)
        # the flags column wraps: it needs its readable minimum (24) and a separator beside the rest
        need = needs(_stage_table(rows, title, multi_metric=len(metrics) > 1, **{**tier, "flags": False})[0]) + 27 \
            if tier["flags"] else needs(table)
        if need <= width:
            break
    console.print(table)
    if any(_is_oracle(r) or "(oracle)" in str(r.get("baseline")) for r in rows):
        console.print(f"[magenta](oracle)[/magenta]{ORACLE_NOTE.removeprefix('(oracle)')}", highlight=False)
    for note in notes:
        console.print(note, highlight=False)
    if wide:
        console.print(_effort_table(rows))
    else:
        console.print("[dim]stop-hit, tokens, cost, seconds: --wide[/dim]", highlight=False)


def _stage_table(rows: list[dict[str, Any]], title: str, *, multi_metric: bool, flags: bool, k_way: str,
                 diffs: str) -> tuple[Any, list[str]]:
    """One layout of the stage table, and the lines to print under it for what it folded."""
    from rich import box
    from rich.table import Table

    show_errors = any(str(r["errors"]) not in ("0", "") for r in rows)
    has_diffs = [k for k in ("diff_prev", "diff_zero") if any(r[k] != "" for r in rows)]
    has_k_way = any(r.get("chance") not in ("", None) for r in rows)
    show_unparsed = any(r.get("unparsed") not in ("", None) for r in rows)  # the parse rate, even at 0%
    has_flags = any(r["flags"] or r.get("checks") for r in rows)
    names = {"diff_prev": "Δ prev [95% CI]", "diff_zero": "Δ zero_shot [95% CI]"}
    cols = [("stage", "left")] + ([("metric", "left")] if multi_metric else []) + [("value [95% CI]", "right"),
                                                                                  ("n", "right")]
    if k_way == "columns":
        cols += ([("chance / maj.", "right")] if has_k_way else []) + ([("unparsed", "right")] if show_unparsed else [])
    elif (has_k_way or show_unparsed) and k_way == "compact":
        cols += [("chance/maj · unp.", "right")]
    if diffs == "columns":
        cols += [(names[k], "right") for k in has_diffs]
    elif has_diffs:
        cols += [("\n".join(names[k] for k in has_diffs), "right")]
    cols += [("errors", "right")] if show_errors else []
    cols += [("flags", "left")] if flags and has_flags else []
    # The narrowest layouts drop the vertical rules and the outer padding: 8 more columns for numbers.
    narrow = diffs == "stacked"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
                  pad_edge=not narrow, show_edge=not narrow)
    for col, justify in cols:
        # flags wraps, but never below a readable width (the numbers columns never wrap). In the
        # narrowest layouts the stage labels wrap too (a long baseline label such as '↳ best-of-8,
        # same reward (oracle)' folds onto a second line), so that no value, CI or n is ever cut.
        wraps = col == "flags" or (narrow and col == "stage")
        table.add_column(col, justify=justify, no_wrap=not wraps, overflow="fold" if col == "stage" else "ellipsis",
                         min_width=24 if col == "flags" else None)
    notes: list[str] = []
    k_notes: list[tuple[str, str]] = []
    for row in rows:
        stage = f"{row['stage']} [magenta](oracle)[/magenta]" if _is_oracle(row) else \
            f"{row['stage']} [magenta]{SELECTED_NOTE}[/magenta]" if _is_selected(row) else row["stage"]
        flag_text = f"[yellow]{row['flags']}[/yellow]" if row["flags"] else ""
        if row.get("checks"):
            flag_text += ("; " if flag_text else "") + f"[green]{row['checks']}[/green]"
        k_text = _k_way_text(row, show_unparsed)
        if flag_text and not flags:  # folded: a letter after the stage, the flags under the table
            letter = chr(ord("a") + len(notes))
            stage += f" [yellow]({letter})[/yellow]"
            notes.append(f"  ({letter}) {stage_label(row)}: {flag_text}")
        if k_text and k_way == "notes":
            k_notes.append((stage_label(row), k_text))
        cells = [stage] + ([row["metric"]] if multi_metric else []) + [_value(row), str(row["n"])]
        if k_way == "columns":
            cells += [chance_text(row)] if has_k_way else []
            if show_unparsed:
                bad = row.get("unparsed") not in ("", None) and row["unparsed"] > UNPARSED_WARN
                cells.append(f"[yellow]{_pct(row['unparsed'])}[/yellow]" if bad else _pct(row.get("unparsed", "")))
        elif (has_k_way or show_unparsed) and k_way == "compact":
            cells.append(_compact_k_way(row))
        diff_cells = []
        for k in has_diffs:  # green: surely better than the comparison; red: surely worse
            style = {1: "green", -1: "red", 0: ""}[diff_sign(row, k)]
            diff_cells.append(f"[{style}]{diff_text(row, k)}[/{style}]" if style else diff_text(row, k))
        cells += diff_cells if diffs == "columns" else ["\n".join(diff_cells).strip("\n")] if has_diffs else []
        cells += [str(row["errors"])] if show_errors else []
        cells += [flag_text] if flags and has_flags else []
        table.add_row(*cells)
        base = baseline_row(row)
        if base:  # e.g. rl's best-of-N with the same reward, right under it
            cells = [f"[dim]{base['stage']}[/dim]"] + ([base["metric"]] if multi_metric else []) + [
                _value(base), str(base["n"])]
            cells += [""] * (len(cols) - len(cells) - (len(has_diffs) if diffs == "columns" else bool(has_diffs))
                             - show_errors - (flags and has_flags))
            if diffs == "columns":
                cells += [diff_text(base, "diff_prev") if k == "diff_prev" else "" for k in has_diffs]
            elif has_diffs:
                cells += [diff_text(base, "diff_prev") if "diff_prev" in has_diffs else ""]
            table.add_row(*cells, *[""] * (len(cols) - len(cells)))
    if len(set(t for _, t in k_notes)) == 1 and len(k_notes) == len(rows):  # the same for every stage: once
        return table, [*notes, f"every stage: {k_notes[0][1]}"]
    return table, notes + [f"  {label}: {text}" for label, text in k_notes]


def _k_way_text(row: dict[str, Any], show_unparsed: bool) -> str:
    """'chance 0.333 / majority 0.357, unparsed 2%' for a row with a K-way metric, else ''."""
    parts = []
    if row.get("chance") not in ("", None):
        parts.append(f"chance {num(row['chance'])}" + (f" / majority {num(row['majority'])}"
                                                      if row.get("majority") not in ("", None) else ""))
    if show_unparsed and row.get("unparsed") not in ("", None):
        parts.append(f"unparsed {_pct(row['unparsed'])}")
    return ", ".join(parts)


def _compact_k_way(row: dict[str, Any]) -> str:
    """'.33/.36 · 2%': chance, majority and unparsed in one narrow cell."""
    def short(x: Any) -> str:
        return "" if x in ("", None) else f"{float(x):.2f}".removeprefix("0")
    k = "/".join(s for s in (short(row.get("chance")), short(row.get("majority"))) if s)
    unp = _pct(row.get("unparsed", ""))
    return " · ".join(s for s in (k, unp) if s)


def _effort_table(rows: list[dict[str, Any]]) -> Any:
    """What each stage cost to measure (`--wide`): stop-hit rate, tokens, dollars, seconds."""
    from rich.table import Table

    show_cost = any(r["cost_usd"] not in ("", 0, 0.0, "0", "0.0") for r in rows)
    table = Table(title="cost of each stage", title_justify="left")
    for col in ["stage", "stop-hit", "tokens in/out"] + (["cost $"] if show_cost else []) + ["s"]:
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for row in rows:
        table.add_row(stage_label(row), _pct(row["stop_hit_rate"]),
                      f"{row['prompt_tokens']}/{row['completion_tokens']}",
                      *([str(row["cost_usd"])] if show_cost else []), str(row["seconds"]))
    return table
