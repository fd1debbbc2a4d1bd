"""zero_shot: the instruction and the example, nothing else. The cheapest rung."""

from __future__ import annotations

from typing import Literal

from ladder.config import StageConfig
from ladder.stages import Prompt, Stage, StageContext
from ladder.types import Guard


class ZeroShotConfig(StageConfig):
    type: Literal["zero_shot"] = "zero_shot"


class ZeroShot(Stage):
    Config = ZeroShotConfig
    # It evaluates a model and trains none, so no later stage can name it in `from_stage`
    # (the config check says so before anything runs). best_of_n inherits this.
    produces_model = False
    family = "prompting"  # one greedy answer per prompt (the Δ zero_shot reference)

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        return [Prompt(ex, ctx.task.render(ex)) for ex in ctx.examples], []
