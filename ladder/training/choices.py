"""The loss over a task's answer choices, and its chance level: what the sft stage's guard and the
training curves compare (it can disagree with accuracy, so both are reported)."""

from __future__ import annotations

import math
from typing import Sequence

from ladder.types import Example, Message


def choice_queries(prompts: Sequence[Sequence[Message]],
                   examples: Sequence[Example]) -> tuple[list[Sequence[Message]], list[str]]:
    """(prompt, continuation) pairs: every choice after every prompt, examples in order."""
    qp, qc = [], []
    for p, ex in zip(prompts, examples):
        for c in ex.choices or ():
            qp.append(p)
            qc.append(c)
    return qp, qc


def choice_loss(lps: Sequence[float], examples: Sequence[Example]) -> dict[str, float]:
    """Mean −log p(target) with p normalised over the choices (chance: log K), and how often the
    target is the most likely choice. `lps` are log-probabilities in choice_queries' order."""
    losses, hits = choice_losses(lps, examples)
    return {"choice_loss": sum(losses) / len(losses), "choice_accuracy": sum(hits) / len(hits)}


def choice_losses(lps: Sequence[float], examples: Sequence[Example]) -> tuple[list[float], list[float]]:
    """Per example: −log p(target) over its choices, and 1.0 where the target is the likeliest."""
    losses, hits, i = [], [], 0
    for ex in examples:
        k = len(ex.choices or ())
        row = list(lps[i:i + k])
        i += k
        top = max(row)
        norm = top + math.log(sum(math.exp(x - top) for x in row))
        t = ex.choices.index(ex.target)
        losses.append(norm - row[t])
        hits.append(float(row[t] == top))
    return losses, hits


def prior_losses(examples: Sequence[Example]) -> list[float] | None:
    """Per example, −log of its target's share among the examples' targets: the loss of a model that
    learned only how often each label occurs. Their mean is the label distribution's entropy (0.687
    on SST-2's 55/45 split, just under chance log 2 = 0.693). None unless every example has the same
    choices (labels, not per-example answers) and the targets take at least two values (with one,
    the prior's loss is 0 and no model can beat it: there is nothing to tell apart)."""
    if not examples or not all(ex.choices for ex in examples) or len({tuple(sorted(ex.choices)) for ex in examples}) > 1:
        return None
    share: dict[str, int] = {}
    for ex in examples:
        share[ex.target] = share.get(ex.target, 0) + 1
    if len(share) < 2:
        return None
    return [-math.log(share[ex.target] / len(examples)) for ex in examples]


def chance_loss(examples: Sequence[Example]) -> float | None:
    """Chance level of the loss over the choices: the mean of −log(1/K_i) = log K_i over the
    examples (each with its own K); None unless every example has choices."""
    if not examples or not all(ex.choices for ex in examples):
        return None
    return sum(math.log(len(ex.choices)) for ex in examples) / len(examples)


def chance_label(examples: Sequence[Example]) -> str:
    ks = sorted({len(ex.choices) for ex in examples})
    return f"−log(1/{ks[0]})" if len(ks) == 1 else f"mean −log(1/K), K = {ks[0]}…{ks[-1]}"
