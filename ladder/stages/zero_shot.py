"""zero_shot: the instruction and the example, nothing else. The cheapest rung."""

from __future__ import annotations

from typing import Literal

from ladder.config import StageConfig
from ladder.stages import Prompt, Stage, StageContext
from ladder.types import Guard


class ZeroShotConfig(StageConfig):
    type: Literal["zero_shot"] = "zero_shot"


def zero_shot_prompts(ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
    """Each test example rendered by the task, nothing added: what zero_shot asks, and what the
    stages whose difference lies elsewhere (best_of_n in sampling, sft and rl in the weights) ask
    too, so their rows compare with zero_shot's pairwise."""
    return [Prompt(ex, ctx.task.render(ex)) for ex in ctx.examples], []


class ZeroShot(Stage):
    Config = ZeroShotConfig
    # It evaluates a model and trains none, so no later stage can name it in `from_stage`
    # (the config check says so before anything runs). best_of_n inherits this.
    produces_model = False
    family = "prompting"  # one greedy answer per prompt (the Δ zero_shot reference)

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        return zero_shot_prompts(ctx)
