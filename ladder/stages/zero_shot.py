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

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        return [Prompt(ex, ctx.task.render(ex)) for ex in ctx.examples], []
