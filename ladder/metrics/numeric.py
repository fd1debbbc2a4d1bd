"""Numeric answers: pull a number out of free text (the last number, or GSM8K's `#### 42`)."""

from __future__ import annotations

import re
from typing import Literal

from ladder.metrics import Metric, MetricConfig
from ladder.types import Example, Score

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
GSM8K = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def extract_number(text: str, how: str) -> float | None:
    if how == "gsm8k":
        m = GSM8K.search(text)
        if m:
            return _to_float(m.group(1))
        how = "last"  # models often skip the marker; fall back rather than score 0
    found = NUMBER.findall(text)
    if not found:
        return None
    return _to_float(found[0] if how == "first" else found[-1])


def _to_float(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


class NumericConfig(MetricConfig):
    type: Literal["numeric"] = "numeric"
    extract: Literal["last", "first", "gsm8k"] = "last"
    """Which number in the completion is the answer: the last, the first, or after '####'."""
    tolerance: float = 1e-6
    """Absolute tolerance of the comparison."""


class Numeric(Metric):
    Config = NumericConfig

    def score(self, ex: Example, completion: str) -> Score:
        want = extract_number(ex.target, "gsm8k")
        got = extract_number(completion, self.config.extract)
        ok = want is not None and got is not None and abs(got - want) <= self.config.tolerance
        return Score(float(ok), extracted=None if got is None else f"{got:g}")
