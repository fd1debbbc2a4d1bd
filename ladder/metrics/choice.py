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


LEADING_LETTER = re.compile(r"^[\s(\[*]*([A-Z])(?:[)\].:*]|\s*$)")
"""An answer that starts with its letter: "B", "B.", "(B)", "B) Paris", "**B**", "B: Paris"."""
ANSWER_IS = re.compile(r"\b[Aa]nswer(?:\s+is)?\s*[:\-]?\s*[(\[*]*([A-Z])(?![\w'])")
"""Or states it: "The answer is B", "Answer: (C)"."""


class Choice(Metric):
    Config = ChoiceConfig
    extracts = True
    k_way = True

    def parse(self, ex: Example, completion: str) -> str | None:
        norm = self.config.normalize
        choices = ex.choices or ()
        if choices and all(len(c) == 1 and c.isupper() for c in choices):
            return self._letter(choices, completion)
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

    def _letter(self, letters: tuple[str, ...], completion: str) -> str | None:
        """Letter answers (answer_format: letter). Matching a lone letter anywhere, as choice text
        is matched, would read the article in "A good answer is B" as answer A: take the letter
        the answer starts with, else the one after "answer is"."""
        whole = self.config.normalize(completion).upper()
        if whole in letters:
            return whole
        if self.config.parse == "exact":
            return None
        for pattern in (LEADING_LETTER, ANSWER_IS):
            m = pattern.search(completion)
            if m and m.group(1) in letters:
                return m.group(1)
        return None

    def score(self, ex: Example, completion: str) -> Score:
        got = self.parse(ex, completion)
        return Score(float(got == ex.target), extracted=got, meta={"parsed": got is not None})
