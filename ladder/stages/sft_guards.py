"""sft's guards on the finetuned model: its loss over the answer choices against chance and the
label distribution's entropy, and the share of its greedy samples that stop before max_tokens."""

from __future__ import annotations

import math
from typing import Sequence

from ladder.backends.base import CallStats, generate, logprobs
from ladder.guards import pct_apart
from ladder.stages import Prompt, StageContext
from ladder.stages.sft_curves import greedy
from ladder.training.choices import chance_label, chance_loss, choice_losses, choice_queries, prior_losses
from ladder.types import Guard


def chance_guard(ctx: StageContext, prompts: Sequence[Prompt]) -> tuple[Guard, dict[str, float] | None]:
    """The finetuned model's test loss over the answer choices against chance, −log(1/K), and
    against the label distribution's entropy (what a model that learned only the labels' shares
    scores). Each is beaten only with a margin: the 95% CI of the per-example paired difference
    wholly below 0 — 0.688 against chance 0.693 is no pass, and neither is 0.688 against an
    entropy of 0.687 (a majority-class model on SST-2)."""
    from ladder.stats import paired_diff

    examples = [p.example for p in prompts]
    if not examples or not all(ex.choices for ex in examples):
        return Guard("chance_loss", "info", "the task has no answer choices, so there is no chance-level "
                     "loss to compare with; judge the metric"), None
    if not ctx.backend.supports_logprobs:
        return Guard("chance_loss", "info", f"the {ctx.backend.config.backend} backend gives no "
                     f"log-probabilities of given answers, so the loss over the choices is not measured"), None
    qp, qc = choice_queries([p.messages for p in prompts], examples)
    losses, hits = choice_losses(logprobs(ctx.backend, ctx.cache, qp, qc), examples)
    loss = sum(losses) / len(losses)
    info = {"choice_loss": loss, "choice_accuracy": sum(hits) / len(hits)}
    chance = chance_loss(examples)  # each example's own K: per-example choices differ in number
    info["chance_loss"] = chance
    refs = [(f"chance {chance_label(examples)} = {chance:.3f}",
             paired_diff(losses, [math.log(len(ex.choices)) for ex in examples]))]
    prior = prior_losses(examples)
    if prior is not None:
        info["label_entropy"] = sum(prior) / len(prior)
        refs.append((f"the label distribution's entropy {info['label_entropy']:.3f}", paired_diff(losses, prior)))
    said, beaten = [], []
    for name, d in refs:
        margin = (f"by {-d.value:.3f} (95% CI {-d.ci_high:.3f} to {-d.ci_low:.3f})" if not math.isnan(d.ci_high)
                  else f"by {-d.value:.3f} (no CI from {d.n} example)")
        won = not math.isnan(d.ci_high) and d.ci_high < 0
        beaten.append(won)
        said.append(f"{'below' if won else 'not clearly below'} {name} {margin}" if won or d.value < 0
                    else f"not below {name}")
    what = f"test loss over the choices {loss:.3f} is " + "; ".join(said)
    if all(beaten):
        return Guard("chance_loss", "ok", f"{what} (the target ranks first {info['choice_accuracy']:.0%})",
                     loss), info
    why = ("a model that learned only how often each label occurs scores as much: it has not learned the task"
           if beaten[0] else "the finetuned model has not learned the task")
    return Guard("chance_loss", "warn", f"{what}: {why}; check the data (label balance), raise learning_rate "
                 f"or epochs", loss), info


def termination_guard(ctx: StageContext, prompts: Sequence[Prompt]) -> Guard:
    """Share of greedy samples that end on EOS or a stop before max_tokens. With a greedy n=1
    evaluation these are the samples just evaluated (the cache answers)."""
    gen = greedy(ctx.gen)
    samples = [s[0] for s in generate(ctx.backend, ctx.cache, [p.messages for p in prompts], gen, CallStats())]
    done = [s for s in samples if s.finish_reason != "error"]
    rate = sum(s.finish_reason in ("eos", "stop") for s in done) / len(done) if done else float("nan")
    threshold = ctx.experiment.config.guards.stop_hit_threshold
    if rate >= threshold:
        return Guard("termination", "ok", f"{rate:.0%} of greedy samples end on EOS or a stop", rate)
    shown, limit = pct_apart(rate, threshold)  # 0.897 against 0.9 reads 89.7% and 90.0%, not 90% twice
    return Guard("termination", "warn", f"only {shown} of the finetuned model's greedy samples end on "
                 f"EOS or a stop before max_tokens={gen.max_tokens} (threshold {limit}): it has not "
                 f"learned to stop; train longer, or check the template_eos guard", rate)
