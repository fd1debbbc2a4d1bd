"""Aggregates with honest uncertainty: every number leaves here with its n and a 95% CI."""

from __future__ import annotations

import math
from typing import Sequence

from ladder.types import MetricValue

Z95 = 1.959963984540054
# Two-sided 95% Student-t quantiles for small samples (df → t); beyond 30 the normal is close.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    if df > 30:
        return Z95
    return _T95[max(k for k in _T95 if k <= df)]


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


def num(x: float, signed: bool = False) -> str:
    """x to 3 decimals ('+' in front when `signed`), never '-0.000': a difference that rounds to
    zero is 0.000, not a negative number."""
    text = f"{x:+.3f}" if signed else f"{x:.3f}"
    return "0.000" if text in ("-0.000", "+0.000") else text
