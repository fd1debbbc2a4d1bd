"""The comparison table: one row per stage, as summary.csv, summary.md and a rich table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ladder.store import atomic_write
from ladder.types import StageResult

COLUMNS = ["stage", "type", "metric", "value", "ci_low", "ci_high", "n", "errors", "stop_hit_rate",
           "prompt_tokens", "completion_tokens", "cost_usd", "seconds", "flags", "run_id"]


def row_of(r: StageResult) -> dict[str, Any]:
    s = r.stats
    return {
        "stage": r.stage, "type": r.type, "metric": r.metric_name,
        "value": _round(r.metric.value), "ci_low": _round(r.metric.ci_low),
        "ci_high": _round(r.metric.ci_high), "n": r.metric.n,
        "errors": s.get("errors", 0), "stop_hit_rate": _round(s.get("stop_hit_rate")),
        "prompt_tokens": s.get("prompt_tokens", 0), "completion_tokens": s.get("completion_tokens", 0),
        "cost_usd": _round(s.get("cost_usd", 0.0), 6), "seconds": _round(s.get("seconds"), 2),
        "flags": "; ".join(g.name for g in r.guards if g.level == "warn"),
        "run_id": r.run_id,
    }


def _round(x: Any, digits: int = 4) -> Any:
    if isinstance(x, float):
        return "" if math.isnan(x) else round(x, digits)
    return "" if x is None else x


def write_summary(folder: Path, results: list[StageResult]) -> None:
    rows = [row_of(r) for r in results]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "summary.csv", buf.getvalue())
    atomic_write(folder / "summary.md", markdown(rows, results))


def markdown(rows: list[dict[str, Any]], results: list[StageResult]) -> str:
    head = ["stage", "metric", "value [95% CI]", "n", "stop-hit", "tokens (prompt/out)", "cost $", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([
            row["stage"], row["metric"], _value(row), str(row["n"]), _pct(row["stop_hit_rate"]),
            f"{row['prompt_tokens']}/{row['completion_tokens']}", str(row["cost_usd"]), str(row["seconds"]),
        ]) + " |")
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
    ci = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if row["ci_low"] != "" else ""
    return f"{row['value']:.3f}{ci}"


def _pct(x: Any) -> str:
    return "" if x == "" else f"{float(x):.0%}"


def read_summary(folder: Path) -> list[dict[str, Any]]:
    with open(folder / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("value", "ci_low", "ci_high", "stop_hit_rate"):
            row[key] = float(row[key]) if row[key] not in ("", None) else ""
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    from ladder.progress import stdout_console

    console = stdout_console()
    show_errors = any(str(r["errors"]) not in ("0", "") for r in rows)
    show_cost = any(r["cost_usd"] not in ("", 0, 0.0, "0", "0.0") for r in rows)
    cols = [("stage", "left"), ("metric", "left"), ("value [95% CI]", "right"), ("n", "right")]
    cols += [("errors", "right")] if show_errors else []
    cols += [("stop-hit", "right"), ("tokens in/out", "right")]
    cols += [("cost $", "right")] if show_cost else []
    cols += [("s", "right"), ("flags", "left")]
    table = Table(title=title, title_justify="left")
    for col, justify in cols:
        table.add_column(col, justify=justify, no_wrap=col != "flags")
    for row in rows:
        cells = [row["stage"], row["metric"], _value(row), str(row["n"])]
        cells += [str(row["errors"])] if show_errors else []
        cells += [_pct(row["stop_hit_rate"]), f"{row['prompt_tokens']}/{row['completion_tokens']}"]
        cells += [str(row["cost_usd"])] if show_cost else []
        cells += [str(row["seconds"]), f"[yellow]{row['flags']}[/yellow]" if row["flags"] else ""]
        table.add_row(*cells)
    console.print(table)
