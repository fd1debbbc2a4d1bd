"""String-matching metrics: exact_match, includes, regex."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ladder.metrics import Metric, MetricConfig, Normalize
from ladder.types import Example, Score


class ExactMatchConfig(MetricConfig):
    type: Literal["exact_match"] = "exact_match"
    normalize: Normalize = Normalize()
    """How both sides are normalised before comparing."""


class ExactMatch(Metric):
    """1 when the normalised completion equals the normalised target."""

    Config = ExactMatchConfig
    extracts = True  # the normalised completion itself

    def score(self, ex: Example, completion: str) -> Score:
        got = self.config.normalize(completion)
        return Score(float(got == self.config.normalize(ex.target)), extracted=got)


class IncludesConfig(ExactMatchConfig):
    type: Literal["includes"] = "includes"


class Includes(Metric):
    """1 when the normalised target appears anywhere in the normalised completion."""

    Config = IncludesConfig

    def score(self, ex: Example, completion: str) -> Score:
        norm = self.config.normalize
        return Score(float(norm(ex.target) in norm(completion)))


class RegexConfig(ExactMatchConfig):
    type: Literal["regex"] = "regex"
    pattern: str = Field(...)
    """Regular expression; its first group (or the whole match) is the extracted answer."""
    which: Literal["first", "last"] = "first"
    """Which match to take when there are several."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        return v


class RegexMatch(Metric):
    """Extract with a regex, then compare to the target like exact_match."""

    Config = RegexConfig
    extracts = True

    def score(self, ex: Example, completion: str) -> Score:
        matches = list(re.finditer(self.config.pattern, completion))
        if not matches:
            return Score(0.0, extracted=None)
        m = matches[0] if self.config.which == "first" else matches[-1]
        got = m.group(1) if m.groups() else m.group(0)
        norm = self.config.normalize
        return Score(float(norm(got) == norm(ex.target)), extracted=got)
