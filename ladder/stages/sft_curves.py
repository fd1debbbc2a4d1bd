"""sft's training curves: the test loss, the task metric, the share of greedy samples that stop and
the loss over the answer choices, measured at step 0, at every evaluation and on the final model
(see ladder/stages/sft.py), and the chart specs `ladder report` draws them from."""

from __future__ import annotations

from typing import Any, Sequence

from ladder.backends.base import CallStats, generate, logprobs
from ladder.stages import Prompt, StageContext, probability_scores
from ladder.training.choices import chance_label, chance_loss, choice_loss, choice_queries
from ladder.types import Example


def curve_seed(ctx: StageContext) -> int:
    """Seed of the curve's draw from the test subsample: the experiment's (not the stage's training
    seed), so variants that train differently are measured on the same examples."""
    return ctx.experiment.seed_for(None)


def prompts_of(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[Prompt]:
    """The prompts of `examples`, in their order."""
    by_id = {p.example.id: p for p in prompts}
    return [by_id[ex.id] for ex in examples]


def greedy(gen: Any) -> Any:
    """The curve's and the termination guard's generation settings: one greedy sample."""
    return gen.model_copy(update={"temperature": 0.0, "n": 1})


def curve_point(ctx: StageContext, prompts: Sequence[Prompt]) -> dict[str, Any]:
    """The generated part of a curve point for `ctx.backend`'s model, through the cache: greedy
    samples scored by the task metric, the share that stopped (EOS or a stop), the loss over the
    answer choices, and how many samples the cache answered. Step 0 (the base model) and the final
    point (the trained model, just evaluated) are measured here; the points in between by the
    trainer, on the weights in memory."""
    stats = CallStats()
    samples = [s[0] for s in generate(ctx.backend, ctx.cache, [p.messages for p in prompts], greedy(ctx.gen), stats)]
    ctx.calls.cached += stats.cached
    ctx.calls.generated += stats.generated
    ctx.calls.errors += stats.errors
    done = [(p, s) for p, s in zip(prompts, samples) if s.finish_reason != "error"]
    if ctx.metric.needs_probabilities:  # scored from the model's probabilities, not the text
        scores = [s.value for s in probability_scores(ctx, [p for p, _ in done])]
    else:
        scores = [ctx.metric.score(p.example, s.text).value for p, s in done]
    out: dict[str, Any] = {"metric": _mean(scores), "stop_rate": _mean([s.finish_reason in ("eos", "stop")
                                                                        for _, s in done])}
    examples = [p.example for p in prompts]
    if examples and all(ex.choices for ex in examples) and ctx.backend.supports_logprobs:
        qp, qc = choice_queries([p.messages for p in prompts], examples)
        out.update(choice_loss(logprobs(ctx.backend, ctx.cache, qp, qc), examples))
    out["samples"] = {"cached": stats.cached, "generated": stats.generated}
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(float(x) for x in xs) / len(xs) if xs else float("nan")


def curve_specs(points: list[dict[str, Any]], train_loss: list[list[float]], metric: str,
                examples: Sequence[Example] = (), of: int | None = None) -> dict[str, Any]:
    """The curves in the shape `ladder report` draws: the losses on one chart (with chance for the
    loss over the choices, when the curve's examples have them), the scores on another — they can
    disagree, which is why both are kept. `of`: the size of the test subsample the curve's examples
    were drawn from; the legend names the draw when it is a part of it.

    Every spec declares its reference lines (`hlines`, maybe none): chance belongs to the loss over
    the answer choices only, not to the loss over the whole completion or the train loss."""
    out: dict[str, Any] = {
        "train_loss": {"x": [s for s, _ in train_loss], "y": {"train": [v for _, v in train_loss]},
                       "xlabel": "step", "ylabel": "loss", "hlines": {}}}
    if not points:  # curves: false
        return out
    part = f" ({len(examples)} of {of} test examples)" if of and examples and len(examples) < of else ""
    steps = [p["step"] for p in points]
    test = {f"test{part}": [p["test_loss"] for p in points]}
    if any("choice_loss" in p for p in points):
        test["test over choices"] = [p.get("choice_loss") for p in points]
    out["test_loss"] = {"x": steps, "y": test, "xlabel": "step", "ylabel": "loss", "hlines": {}}
    out["test_metric"] = {"x": steps, "y": {f"{metric}{part}": [p.get("metric") for p in points],
                                            "stopped (EOS or stop)": [p.get("stop_rate") for p in points]},
                          "xlabel": "step", "ylabel": "score", "hlines": {}}
    chance = chance_loss(examples)
    if chance is not None:
        out["test_loss"]["hlines"] = {f"chance {chance_label(examples)} (loss over choices)": chance}
        out["test_metric"]["y"]["target ranks first"] = [p.get("choice_accuracy") for p in points]
    return out
