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
from typing import Any, Callable, Literal, Sequence

from ladder.errors import LadderError
from ladder.metrics import Metric, MetricConfig
from ladder.types import Example, Score


class ChoiceProbConfig(MetricConfig):
    type: Literal["choice_prob"] = "choice_prob"
    normalize: Literal["none", "tokens", "chars"] = "none"
    """Length normalisation of each choice's summed log-probability before comparing: none (lm-eval's
    `acc`), chars — divided by the choice's length in characters (lm-eval's `acc_norm`) — or tokens."""
    score: Literal["probability", "accuracy"] = "probability"
    """probability: the target's share of the K choices (softmax of the normalised log-probabilities);
    accuracy: 1 when the target is the top choice (lm-eval's acc / acc_norm, by `normalize`)."""
    generate: bool = False
    """Also generate a greedy answer per example, to read beside the score in the sample browser
    and samples.jsonl. The score never reads it: false (the default) costs one forward pass per
    choice set and records the top choice as the answer (finish reason `scored`)."""


class ChoiceProb(Metric):
    Config = ChoiceProbConfig
    k_way = True
    needs_probabilities = True

    @property
    def name(self) -> str:
        # The table must say which number this is: acc_norm is not acc is not a probability.
        c = self.config
        parts = [p for p in ("acc" if c.score == "accuracy" else "",
                             "" if c.normalize == "none" else f"norm={c.normalize}") if p]
        return f"choice_prob[{','.join(parts)}]" if parts else "choice_prob"

    def continuations(self, ex: Example) -> list[str]:
        """What to measure after the prompt: every answer choice (each example its own)."""
        if not ex.choices:
            raise LadderError(f"example {ex.id} has no answer choices, and metric 'choice_prob' reads "
                              f"the model's probabilities of them", field="metric.type",
                              fix="give the task choices (task.choices, task.choices_field, or a custom "
                                  "task's Example.choices), or use a text metric")
        return list(ex.choices)

    def score(self, ex: Example, completion: str) -> Score:
        raise TypeError("choice_prob reads the model's probabilities: score it with score_logprobs")

    def score_logprobs(self, ex: Example, logprobs: Sequence[float],
                       token_counts: Sequence[int] | None = None) -> Score:
        """`logprobs[i]`: log p(choice i | prompt), summed over its tokens; `token_counts[i]` its
        number of tokens (for normalize: tokens). The score is the target's share (or whether it is
        on top), and `extracted` the top choice (so the top-1 answer is visible in samples.jsonl)."""
        choices = self.continuations(ex)
        how = self.config.normalize
        if how == "chars":
            # lm-eval's acc_norm (lm-evaluation-harness 0.4.x, lm_eval/api/task.py at commit 44406dc,
            # ConfigurableTask.process_results, multiple_choice): argmax of lls / completion_len with
            # completion_len = [len(choice) for choice in choices] — characters of the choice text,
            # without the target_delimiter space it scores before it. No choice is empty here.
            logprobs = [lp / max(1, len(c)) for lp, c in zip(logprobs, choices)]
        elif how == "tokens":
            if token_counts is None:
                raise TypeError("normalize: tokens needs the continuations' token counts")
            logprobs = [lp / max(1, n) for lp, n in zip(logprobs, token_counts)]
        logprobs = list(logprobs)
        top = max(logprobs)
        norm = top + math.log(sum(math.exp(x - top) for x in logprobs))
        best = choices[logprobs.index(top)]  # the first of equal ones, as np.argmax
        hit = float(best == ex.target)
        p = math.exp(logprobs[choices.index(ex.target)] - norm)
        return Score(hit if self.config.score == "accuracy" else p, extracted=best,
                     meta={"top1": hit, "p_target": p})


def probability_scores_with(metric: Metric, examples: Sequence[Example], prompts: Sequence[Sequence[Any]],
                            logprobs: Callable[[list, list], list[float]],
                            token_counts: Callable[[list[str]], list[int]]) -> list[Score]:
    """A probability metric's score of each example from one batched log-probability call:
    `logprobs(prompts, continuations)` (the stage's cached call, or sft's curve on the weights in
    memory) and, for normalize: tokens, `token_counts(continuations)`."""
    conts = [metric.continuations(ex) for ex in examples]
    flat = [x for c in conts for x in c]
    lps = logprobs([p for p, c in zip(prompts, conts) for _ in c], flat)
    counts = token_counts(flat) if getattr(metric.config, "normalize", None) == "tokens" else None
    out, i = [], 0
    for ex, c in zip(examples, conts):
        extra = {"token_counts": counts[i:i + len(c)]} if counts is not None else {}
        out.append(metric.score_logprobs(ex, lps[i:i + len(c)], **extra))
        i += len(c)
    return out
