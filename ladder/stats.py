"""Aggregates with honest uncertainty: every number leaves here with its n and a 95% CI."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

from ladder.types import MetricValue

Z95 = 1.959963984540054


@lru_cache(maxsize=1024)
def t_quantile(df: int, alpha: float = 0.05) -> float:
    """The two-sided (1 − alpha) Student-t critical value with df degrees of freedom, from scipy:
    every paired interval (Δ columns, Holm-adjusted variant intervals, Welch) uses this one."""
    from scipy import stats  # heavy: imported when an interval is first computed

    return float(stats.t.ppf(1 - alpha / 2, df))


def t95(df: int) -> float:
    """The two-sided 95% Student-t critical value (1.968 at df 299, not the normal's 1.960)."""
    return t_quantile(df, 0.05)


def wilson(successes: float, n: int) -> tuple[float, float]:
    """Wilson score interval for a proportion: stays inside [0, 1] and behaves near 0 and 1,
    where the normal approximation claims impossible certainty."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float]) -> MetricValue:
    """Mean with a 95% CI: Wilson for 0/1 scores, Student t otherwise."""
    n = len(values)
    if n == 0:
        return MetricValue(float("nan"), float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if all(v in (0.0, 1.0) for v in values):
        lo, hi = wilson(sum(values), n)
        return MetricValue(mean, lo, hi, n)
    return t_interval(values)


def t_interval(values: Sequence[float]) -> MetricValue:
    """Mean ± t·sd/√n (Student t, 95%); no interval from fewer than two values."""
    n = len(values)
    if n == 0:
        return MetricValue(float("nan"), float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n == 1:
        return MetricValue(mean, float("nan"), float("nan"), 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return MetricValue(mean, mean - half, mean + half, n)



def paired_diff(a: Sequence[float], b: Sequence[float]) -> MetricValue:
    """Mean of the per-example differences a_i − b_i with a Student-t 95% CI (mean ± t·sd/√n).

    Pairing removes the between-example variance both stages share, so on the same examples
    this interval is much narrower than the difference of two unpaired intervals. (Wilson does
    not apply: differences of 0/1 scores take the values −1, 0 and 1.)"""
    if len(a) != len(b):
        raise ValueError(f"paired_diff needs equal lengths, got {len(a)} and {len(b)}")
    return t_interval([x - y for x, y in zip(a, b)])


IDENTICAL = "identical outputs"
"""What a paired difference prints when every per-example difference is 0."""


def identical(value: object, ci_low: object, ci_high: object) -> bool:
    """Whether a paired difference is all zeros: mean 0 with a zero-width interval, which a t
    interval gives only when every per-example difference is 0 (sd 0)."""
    try:
        return float(value) == float(ci_low) == float(ci_high) == 0.0
    except (TypeError, ValueError):
        return False


def num(x: float, signed: bool = False) -> str:
    """x to 3 decimals ('+' in front when `signed`), never '-0.000': a difference that rounds to
    zero is 0.000, not a negative number."""
    text = f"{x:+.3f}" if signed else f"{x:.3f}"
    return "0.000" if text in ("-0.000", "+0.000") else text


def t_p_value(d: list[float]) -> tuple[float, float, float]:
    """(mean, sd, two-sided p of mean = 0) of the paired differences, Student t with n−1 df."""
    from scipy import stats

    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0:
        return mean, 0.0, 1.0 if mean == 0 else 0.0
    return mean, sd, float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(pvalues: list[float], alpha: float = 0.05) -> tuple[list[float], list[float]]:
    """Holm's step-down adjustment of m p-values: (adjusted p-values, per-comparison alpha for
    its interval), both in the input order. The comparison ranked i-th smallest (from 0) gets
    alpha / (m − i); its adjusted p is the running max of min(1, (m − j)·p_(j)), j ≤ i.
    NaN p-values (fewer than two pairs) rank last and stay NaN."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (math.isnan(pvalues[i]), pvalues[i]))
    adjusted, level = [float("nan")] * m, [alpha] * m
    running = 0.0
    for rank, i in enumerate(order):
        level[i] = alpha / (m - rank)
        if math.isnan(pvalues[i]):
            continue
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted, level


def best_variants(scores: dict[str, dict[str, dict[str, float]]],
                  values: dict[tuple[str, str], Any], alpha: float = 0.05) -> dict[str, tuple[str, float]]:
    """stage -> (best variant, its largest Holm-adjusted p) for each stage whose highest-valued
    variant leads every other variant significantly: paired t of best − other on the examples both
    scored, Holm over those comparisons, every adjusted p < alpha and every mean > 0 (Holm rejects
    all m hypotheses exactly when the largest adjusted p is below alpha). A tie for the top, or a
    stage with one variant, marks nothing."""
    out: dict[str, tuple[str, float]] = {}
    stages = list(dict.fromkeys(s for by_stage in scores.values() for s in by_stage))
    for stage in stages:
        vals = {v: values.get((v, stage)) for v in scores if stage in scores[v]}
        vals = {v: x for v, x in vals.items() if isinstance(x, (int, float)) and not math.isnan(x)}
        if len(vals) < 2:
            continue
        top = max(vals.values())
        leaders = [v for v, x in vals.items() if x == top]
        if len(leaders) > 1:
            continue
        best = leaders[0]
        means, ps = [], []
        for other in vals:
            if other == best:
                continue
            a, b = scores[best][stage], scores[other][stage]
            d = [a[i] - b[i] for i in a if i in b]
            mean, _, p = t_p_value(d) if len(d) > 1 else (float("nan"),) * 3
            means.append(mean)
            ps.append(p)
        if any(math.isnan(p) for p in ps) or any(not m > 0 for m in means):
            continue
        adjusted = holm(ps, alpha)[0] if len(ps) > 1 else ps
        if max(adjusted) < alpha:
            out[stage] = (best, max(adjusted))
    return out
