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
from ladder.stats import num  # noqa: F401 - where report and tests have always imported it from
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
           "oracle", *K_WAY, "run_id"]
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
        "errors": s.get("errors", 0), "stop_hit_rate": _round(s.get("stop_hit_rate")),
        "prompt_tokens": s.get("prompt_tokens", 0), "completion_tokens": s.get("completion_tokens", 0),
        "cost_usd": _round(s.get("cost_usd", 0.0), 6), "seconds": _round(s.get("seconds"), 2),
        "flags": "; ".join(g.name for g in r.guards if g.level == "warn"),
        # Stage-specific guardrails that passed (e.g. sft's chance_loss): a check that ran and
        # passed is worth seeing, not just one that failed.
        "checks": "; ".join(f"{g.name} ok" for g in r.guards if g.level == "ok" and g.name not in _ALWAYS),
        "run_id": r.run_id,
        "oracle": r.oracle,
        **{k: _round(s.get(k), 6) for k in K_WAY},
        **baseline_of(r),
    }


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

    diffs = paired_columns(ev)
    return [{**dict.fromkeys(COLUMNS, ""), **row_of(r),
             **{k: _round(v) for k, v in {**diffs[r.stage], **mde_columns(diffs[r.stage])}.items()}}
            for r in ev.results]


def write_summary(folder: Path, results: list[StageResult]) -> None:
    from ladder.advice import next_steps, steps_markdown
    from ladder.evidence import Evidence

    ev = Evidence.load(folder, results)
    rows = table_rows(ev)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "summary.csv", buf.getvalue())
    atomic_write(folder / "summary.md", markdown(rows, results) + "\n" + steps_markdown(next_steps(ev)))


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
    """The stage's name, with '(oracle)' after it when the row is an upper bound."""
    return f"{row['stage']} (oracle)" if _is_oracle(row) else row["stage"]


def chance_text(row: dict[str, Any]) -> str:
    """'0.333 / 0.357': chance (mean 1/K) and the majority class's share; '' for other metrics."""
    if row.get("chance") in ("", None):
        return ""
    return f"{num(row['chance'])} / {num(row['majority'])}" if row.get("majority") not in ("", None) \
        else num(row["chance"])


def diff_text(row: dict[str, Any], key: str) -> str:
    """'+0.120 [+0.050, +0.190]' or '' when the row has no such comparison."""
    if row.get(key) in ("", None):
        return ""
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
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    from ladder.progress import stdout_console

    console = stdout_console()
    show_errors = any(str(r["errors"]) not in ("0", "") for r in rows)
    show_cost = any(r["cost_usd"] not in ("", 0, 0.0, "0", "0.0") for r in rows)
    diffs = [k for k in ("diff_prev", "diff_zero") if any(r[k] != "" for r in rows)]
    k_way = any(r.get("chance") not in ("", None) for r in rows)
    show_unparsed = any(r.get("unparsed") not in ("", None) for r in rows)  # the parse rate, even at 0%
    cols = [("stage", "left"), ("metric", "left"), ("value [95% CI]", "right"), ("n", "right")]
    cols += [("chance / maj.", "right")] if k_way else []
    cols += [("unparsed", "right")] if show_unparsed else []
    cols += [({"diff_prev": "Δ prev [95% CI]", "diff_zero": "Δ zero_shot [95% CI]"}[k], "right") for k in diffs]
    cols += [("errors", "right")] if show_errors else []
    cols += [("stop-hit", "right"), ("tokens in/out", "right")]
    cols += [("cost $", "right")] if show_cost else []
    cols += [("s", "right"), ("flags", "left")]
    table = Table(title=title, title_justify="left")
    for col, justify in cols:
        # flags wraps, but never below a readable width (the numbers columns never wrap).
        table.add_column(col, justify=justify, no_wrap=col != "flags", min_width=24 if col == "flags" else None)
    for row in rows:
        stage = f"{row['stage']} [magenta](oracle)[/magenta]" if _is_oracle(row) else row["stage"]
        cells = [stage, row["metric"], _value(row), str(row["n"])]
        cells += [chance_text(row)] if k_way else []
        if show_unparsed:
            bad = row.get("unparsed") not in ("", None) and row["unparsed"] > UNPARSED_WARN
            cells.append(f"[yellow]{_pct(row['unparsed'])}[/yellow]" if bad else _pct(row.get("unparsed", "")))
        for k in diffs:  # green: surely better than the comparison; red: surely worse
            style = {1: "green", -1: "red", 0: ""}[diff_sign(row, k)]
            cells.append(f"[{style}]{diff_text(row, k)}[/{style}]" if style else diff_text(row, k))
        cells += [str(row["errors"])] if show_errors else []
        cells += [_pct(row["stop_hit_rate"]), f"{row['prompt_tokens']}/{row['completion_tokens']}"]
        cells += [str(row["cost_usd"])] if show_cost else []
        flags = f"[yellow]{row['flags']}[/yellow]" if row["flags"] else ""
        if row.get("checks"):
            flags += ("; " if flags else "") + f"[green]{row['checks']}[/green]"
        cells += [str(row["seconds"]), flags]
        table.add_row(*cells)
        base = baseline_row(row)
        if base:  # e.g. rl's best-of-N with the same reward, right under it
            cells = [f"[dim]{base['stage']}[/dim]", base["metric"], _value(base), str(base["n"])]
            cells += [""] * (k_way + show_unparsed)
            cells += [diff_text(base, "diff_prev") if k == "diff_prev" else "" for k in diffs]
            table.add_row(*cells, *[""] * (len(cols) - len(cells)))
    console.print(table)
    if any(_is_oracle(r) or "(oracle)" in str(r.get("baseline")) for r in rows):
        console.print(f"[magenta](oracle)[/magenta]{ORACLE_NOTE.removeprefix('(oracle)')}", highlight=False)
