"""A column's metric on the shown rows (n, 95% CI) and the paired difference between two columns,
saying plainly when there are too few rows to tell them apart (ladder.stats, as the table does)."""

from __future__ import annotations

import math
from typing import Any

from ladder.stats import mean_ci, num, paired_diff


def _fmt(v: float) -> str | None:
    return None if math.isnan(v) else round(v, 6)


def column_metric(scores: dict[str, float]) -> dict[str, Any]:
    """scores: row id → score, for the rows of the column that have one."""
    m = mean_ci(list(scores.values()))
    text = "no scored row" if m.n == 0 else (
        f"{num(m.value)} (n={m.n})" if math.isnan(m.ci_low) else f"{num(m.value)} [{num(m.ci_low)}, {num(m.ci_high)}] n={m.n}")
    return {"value": _fmt(m.value), "ci_low": _fmt(m.ci_low), "ci_high": _fmt(m.ci_high), "n": m.n, "text": text}


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """Δ = a − b on the rows both scored, with its 95% CI and a verdict."""
    common = [r for r in a if r in b]
    if len(common) < 2:
        return {"n": len(common), "value": None, "ci_low": None, "ci_high": None,
                "text": f"n={len(common)} paired rows: too few to compare (run both columns on the same rows)"}
    d = paired_diff([a[r] for r in common], [b[r] for r in common])
    if math.isnan(d.ci_low) or d.ci_low == d.ci_high:
        verdict = "every paired row agrees" if d.value == 0 else "the same difference on every row"
        ci = ""
    else:
        ci = f" [{num(d.ci_low, True)}, {num(d.ci_high, True)}]"
        verdict = (f"n={d.n} is too small to tell these columns apart (the CI includes 0)"
                   if d.ci_low <= 0 <= d.ci_high else ("better" if d.value > 0 else "worse") + " beyond noise")
    return {"n": d.n, "value": _fmt(d.value), "ci_low": _fmt(d.ci_low), "ci_high": _fmt(d.ci_high),
            "text": f"Δ {num(d.value, True)}{ci} n={d.n}: {verdict}"}
