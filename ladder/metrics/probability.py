"""Metrics that read the model's own probabilities rather than its answer text.

`choice_prob`: the probability the model puts on the gold choice, normalised over the task's
choices (p = softmax over the K choices' log-probabilities after the prompt). Its mean beside the
accuracy says whether the model's confidence can be believed: a calibrated model that is right
70% of the time puts about 0.7 on the target on average.

That reading is only valid for models trained by likelihood (pretraining, SFT). An RL-trained
policy's token probabilities are not calibrated — RL sharpens them toward whatever the reward
liked — so ladder refuses these metrics on RL policies (`needs_probabilities`).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

from ladder.metrics import Metric, MetricConfig
from ladder.types import Example, Score


class ChoiceProbConfig(MetricConfig):
    type: Literal["choice_prob"] = "choice_prob"


class ChoiceProb(Metric):
    Config = ChoiceProbConfig
    k_way = True
    needs_probabilities = True

    def continuations(self, ex: Example) -> list[str]:
        """What to measure after the prompt: every answer choice."""
        return list(ex.choices or ())

    def score(self, ex: Example, completion: str) -> Score:
        raise TypeError("choice_prob reads the model's probabilities: score it with score_logprobs")

    def score_logprobs(self, ex: Example, logprobs: Sequence[float]) -> Score:
        """`logprobs[i]`: log p(choice i | prompt). The score is the target's share, and
        `extracted` the top choice (so the top-1 answer is still visible in samples.jsonl)."""
        top = max(logprobs)
        norm = top + math.log(sum(math.exp(x - top) for x in logprobs))
        choices = self.continuations(ex)
        p = math.exp(logprobs[choices.index(ex.target)] - norm)
        best = choices[logprobs.index(top)]
        return Score(p, extracted=best, meta={"top1": float(best == ex.target)})
