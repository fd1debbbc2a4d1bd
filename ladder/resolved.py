"""What a stage runs with, decided once: the value the runner hands down to the stage.

The runner resolves each stage when it is about to run it (or to look up its finished result):
its model from the experiment's `model` and the stage's overrides, with `from_stage` replaced by
what that stage produced; its generation settings; the metric; and its run id and folder. The
stage reads them from `StageContext.resolved` instead of merging config sections again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from ladder.backends.base import BackendConfig
from ladder.config import GenerationConfig, StageConfig


@dataclass(frozen=True)
class ResolvedStage:
    config: StageConfig
    """The stage's own config section (its `name` filled in)."""
    model: BackendConfig
    """The model the stage runs: the experiment's with the stage's overrides, and `from_stage`
    replaced by the model that stage produced. Under `ladder check`, before that stage has run,
    the configured model stands in (with `from_stage` cleared)."""
    from_stage: str | None
    """The earlier stage whose model this is (`model: {from_stage: ...}`), or None."""
    generation: GenerationConfig
    """Sampling settings: the stage's over its type's defaults over the experiment's, seed filled in."""
    metric: BaseModel
    """The experiment's metric config (the same for every stage, so rows compare)."""
    run_id: str = ""
    """Hash of everything that determines the stage's output; '' under `ladder check`."""
    run_dir: Path | None = None
    """<results>/<experiment>/<stage>/<run_id>, where the stage writes; None under `ladder check`."""

    @property
    def name(self) -> str:
        return self.config.name
