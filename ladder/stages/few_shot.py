"""few_shot: gold examples before the question, as earlier user/assistant turns.

Three ways to get the shots:
  examples: [...]   1-10 written by hand in the YAML (the same for every test example);
  k: 8              drawn from the train split, seeded, balanced over labels when there are choices;
  k: max            as many train examples as fit in the context window, leaving room for the
                    answer. Whole examples are dropped, never cut in half.
Shots are re-drawn per test example (seeded by its id) unless `resample: false`, so one unlucky
draw does not decide the whole stage. Any k is trimmed to fit the context, with a warning.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from ladder.config import StageConfig
from ladder.stages import Prompt, Stage, StageContext
from ladder.types import Example, Guard


class FewShotConfig(StageConfig):
    type: Literal["few_shot"] = "few_shot"
    k: int | Literal["max"] | None = None
    """Shots drawn from the train split, or 'max' to fill the context window. Not with `examples`."""
    examples: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=10)
    """1-10 gold shots written here, each a mapping with the template's fields and the target."""
    balanced: bool = True
    """With choices: cycle through labels so each label is shown about equally often."""
    resample: bool = True
    """Draw fresh shots for each test example (seeded by its id); false: one draw for all."""
    seed: int | None = None
    """Seed of the shot draw; defaults to the experiment seed."""

    @field_validator("k")
    @classmethod
    def _k_positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 1 <= v <= 10_000:
            raise ValueError("k must be between 1 and 10,000 (or 'max')")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> FewShotConfig:
        if (self.k is None) == (self.examples is None):
            raise ValueError("few_shot needs exactly one of `k` (drawn from the train split, or "
                             "'max') or `examples` (1-10 written in the YAML)")
        return self


class FewShot(Stage):
    Config = FewShotConfig
    produces_model = False  # nothing for a later stage's `from_stage`
    advice_if_worse = ("check the shot formatting (do the shots' answers look like the answer you want?) and the "
                       "label balance of the shots; read a few prompts in samples.jsonl.")

    @classmethod
    def reads(cls, cfg: FewShotConfig) -> list[str]:
        return [] if cfg.k is None else [cls.TRAIN_SPLIT]  # YAML shots are in the config itself

    @staticmethod
    def check_inputs(cfg: FewShotConfig, task) -> None:
        """Called by the runner before anything is written: the shots' source must be usable."""
        if cfg.examples is not None:
            for i, row in enumerate(cfg.examples):
                task.make_example(row, f"shot-{i}", field=f"stage {cfg.name} examples[{i}]")
        else:
            task.examples("train")

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        cfg: FewShotConfig = self.config
        seed = ctx.experiment.config.seed if cfg.seed is None else cfg.seed
        if cfg.examples is not None:
            pool = [ctx.task.make_example(row, f"shot-{i}", field=f"stage {cfg.name} examples[{i}]")
                    for i, row in enumerate(cfg.examples)]
        else:
            pool = list(ctx.task.examples("train"))
        budget = _budget(ctx)
        prompts, trimmed = [], 0
        for ex in ctx.examples:
            if cfg.examples is not None:
                order = pool
            else:
                rng = random.Random(f"{seed}:{ex.id}" if cfg.resample else seed)
                order = shot_order([s for s in pool if s.id != ex.id], rng, cfg.balanced)
            want = len(order) if cfg.k in ("max", None) else min(cfg.k, len(order))
            k = fit(ctx, ex, order[:want], budget) if budget else want
            trimmed += cfg.k not in ("max", None) and k < want
            messages = ctx.task.render(ex, order[:k])
            prompts.append(Prompt(ex, messages, {"shots": k}))
        return prompts, _guards(prompts, trimmed, cfg)


def shot_order(pool: Sequence[Example], rng: random.Random, balanced: bool) -> list[Example]:
    """A seeded order of candidate shots; balanced: round-robin over labels in shuffled order."""
    pool = list(pool)
    rng.shuffle(pool)
    if not balanced or not pool or pool[0].choices is None:
        return pool
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in pool:
        by_label[ex.target].append(ex)
    labels = list(by_label)
    out = []
    while any(by_label.values()):
        for label in labels:
            if by_label[label]:
                out.append(by_label[label].pop())
    return out


def _budget(ctx: StageContext) -> int | None:
    """Prompt tokens allowed: the context window minus room for the answer."""
    window = ctx.backend.context_window
    return None if window is None else window - ctx.gen.max_tokens


def fit(ctx: StageContext, ex: Example, shots: Sequence[Example], budget: int) -> int:
    """The largest k such that the prompt with shots[:k] fits the budget (whole shots only).

    Prompt length grows with k. Rendering a whole train split to test it would cost seconds per
    example, so start from an estimate (mean tokens of the first few shots), gallop to bracket
    the answer, then binary-search on real token counts of the rendered prompt."""
    def fits(k: int) -> bool:
        return ctx.backend.count_tokens(ctx.task.render(ex, shots[:k])) <= budget

    n = len(shots)
    if n == 0:
        return 0
    base = ctx.backend.count_tokens(ctx.task.render(ex))
    m = min(n, 8)
    per_shot = max(1.0, (ctx.backend.count_tokens(ctx.task.render(ex, shots[:m])) - base) / m)
    k = int(min(n, max(0, (budget - base) // per_shot)))
    step = max(1, k // 8)
    # Bracket: fits(lo) holds (lo = 0 is taken as the floor) and fits(hi) does not.
    if fits(k):
        lo = k
        while True:
            nxt = min(n, lo + step)
            if nxt == lo:
                return n
            if not fits(nxt):
                hi = nxt
                break
            lo, step = nxt, step * 2
    else:
        hi = k
        while True:
            nxt = max(0, hi - step)
            if nxt == 0 or fits(nxt):
                lo = nxt
                break
            hi, step = nxt, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _guards(prompts: list[Prompt], trimmed: int, cfg: FewShotConfig) -> list[Guard]:
    shots = [p.info["shots"] for p in prompts]
    mean = sum(shots) / len(shots) if shots else 0.0
    out = [Guard("shots", "info", f"{mean:.1f} shots per prompt on average (min {min(shots, default=0)}, "
                 f"max {max(shots, default=0)})", mean)]
    if trimmed:
        out.append(Guard("context", "warn", f"k={cfg.k} shots did not fit the context window for "
                         f"{trimmed} examples; whole shots were dropped to fit", float(trimmed)))
    if shots and min(shots) == 0:
        out.append(Guard("context", "warn", "some prompts got no shots at all: the context window "
                         "is too small for even one example plus the answer", 0.0))
    return out
