"""K-way choice accuracy: map a free-text completion onto one of the task's choices."""

from __future__ import annotations

import re
from typing import Literal

from ladder.metrics import Metric, MetricConfig, Normalize
from ladder.types import Example, Score


class ChoiceConfig(MetricConfig):
    type: Literal["choice"] = "choice"
    normalize: Normalize = Normalize()
    """How completion and choices are normalised before matching."""
    parse: Literal["exact", "first_mention"] = "first_mention"
    """exact: the whole completion must be a choice; first_mention: the earliest choice named
    as a whole word counts (so "Positive, clearly" is 'positive')."""


class Choice(Metric):
    Config = ChoiceConfig
    k_way = True

    def parse(self, ex: Example, completion: str) -> str | None:
        norm = self.config.normalize
        choices = ex.choices or ()
        text = norm(completion)
        by_norm = {norm(c): c for c in choices}
        if text in by_norm:
            return by_norm[text]
        if self.config.parse == "exact":
            return None
        best = None
        for key, choice in by_norm.items():
            m = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), choice)
        return best[1] if best else None

    def score(self, ex: Example, completion: str) -> Score:
        got = self.parse(ex, completion)
        return Score(float(got == ex.target), extracted=got, meta={"parsed": got is not None})
