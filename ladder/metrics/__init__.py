"""Metrics: score one completion against one example.

The same `score(example, completion) -> Score` serves evaluation, best-of-N selection and RL
reward. Aggregation (mean, n and a 95% CI) is stats.py's job, not each metric's.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

from pydantic import BaseModel

from ladder.config import Section
from ladder.types import Example, Score


class MetricConfig(Section):
    type: str
    """Which metric: exact_match, includes, regex, numeric, choice, python."""


class Normalize(Section):
    lowercase: bool = True
    """Compare case-insensitively."""
    strip_punctuation: bool = True
    """Drop ASCII punctuation before comparing ("Positive." matches "positive")."""
    collapse_whitespace: bool = True
    """Trim and squeeze runs of whitespace to one space."""

    def __call__(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.strip_punctuation:
            text = text.translate(str.maketrans("", "", string.punctuation))
        if self.collapse_whitespace:
            text = re.sub(r"\s+", " ", text).strip()
        return text


class Metric:
    """Base class: subclasses set `Config` and implement `score`."""

    Config: type[BaseModel] = MetricConfig
    #: True when the metric reads calibrated probabilities (the RL guard refuses those).
    needs_probabilities = False
    #: True when `score` puts the answer it read in `Score.extracted` (the same answer gives the same
    #: string) without looking at the target: what best_of_n's `select: majority` votes on.
    extracts = False
    #: K-way metrics (the answer is one of the example's choices): their rows show chance (1/K per
    #: example), the majority-class share and how many answers were none of the choices.
    k_way = False
    #: True when scoring runs a model (a judge, classifier, PM): the evaluation then scores many
    #: completions in one `score_batch` call (concurrent, cached) instead of one at a time.
    batched = False

    @classmethod
    def reads_targets(cls, config: BaseModel) -> bool:
        """Whether scoring with this config reads the example's gold target. A metric compares
        against it by definition; a scorer that runs a model says otherwise. Used as a selector or
        reward on the test examples, one that reads targets makes its stage an oracle."""
        return True

    @classmethod
    def scoring_code(cls, config: BaseModel) -> list[object]:
        """The classes and functions whose source decides this metric's scores with `config`: their
        files are hashed into the run id, so editing them gives a stage a new run (see
        ladder.digests). Default: the class itself (with its bases, e.g. this Metric)."""
        return [cls]

    def __init__(self, config: BaseModel):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.type

    def score(self, ex: Example, completion: str) -> Score:
        raise NotImplementedError

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        """Score many completions at once. Metrics that run a model (ladder.scorers) override this
        to batch the forward passes, and their `score` is the one-item case."""
        return [self.score(ex, c) for ex, c in zip(examples, completions)]


def build_metric(config: BaseModel) -> Metric:
    from ladder.registry import METRICS

    return METRICS.get(config.type, field="metric.type")(config)
