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
    return {"choice_loss": sum(losses) / len(losses), "choice_accuracy": sum(hits) / len(hits)}


def chance_loss(examples: Sequence[Example]) -> float | None:
    """Chance level of the loss over the choices: the mean of −log(1/K_i) = log K_i over the
    examples (each with its own K); None unless every example has choices."""
    if not examples or not all(ex.choices for ex in examples):
        return None
    return sum(math.log(len(ex.choices)) for ex in examples) / len(examples)


def chance_label(examples: Sequence[Example]) -> str:
    ks = sorted({len(ex.choices) for ex in examples})
    return f"−log(1/{ks[0]})" if len(ks) == 1 else f"mean −log(1/K), K = {ks[0]}…{ks[-1]}"
