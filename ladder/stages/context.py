"""What a stage is given (StageContext), the prompts it asks (Prompt) and what `ladder check`
counts of them (Plan, Pass). Re-exported by ladder.stages, where plugins import them from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.backends.base import Backend, BackendPool, CallStats
from ladder.cache import Cache
from ladder.config import Experiment, GenerationConfig, StageConfig
from ladder.metrics import Metric
from ladder.resolved import ResolvedStage
from ladder.tasks import TaskLike
from ladder.types import Example, Guard, Message, Sample


@dataclass
class StageContext:
    experiment: Experiment
    stage: StageConfig
    task: TaskLike
    examples: list[Example]
    """The test subsample: the same examples for every stage."""
    metric: Metric
    backend: Backend
    gen: GenerationConfig
    cache: Cache | None
    """None under `ladder check`, which only builds prompts."""
    run_dir: Path | None
    run_id: str
    pool: BackendPool | None = None
    """Loaded backends, shared across stages (a stage that trains a model evaluates it through here)."""
    calls: CallStats = field(default_factory=CallStats)
    produced: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What finished stages produced for later ones (stage name → {model, reward_model}): how a
    scorer's `from_stage:` finds a trained reward model."""
    extra_metrics: dict[str, Metric] = field(default_factory=dict)
    """The further metrics of `metrics:` (name -> metric): each sample is scored by them too, and
    the row carries their means beside its value (StageResult.extra.metrics)."""
    earlier: dict[str, Path] = field(default_factory=dict)
    """Run folders of the earlier stages whose outputs this one reads (few_shot's `shots_from:`,
    sft's `train_from:`; ladder/earlier.py); empty under `ladder check`."""
    resolved: ResolvedStage | None = None
    """The stage as the runner resolved it, once: model (its `from_stage` applied), generation,
    metric, run id and folder. `backend`, `gen`, `run_dir` and `run_id` above are taken from it."""
    opened: set[Path] = field(default_factory=set)
    """The records files this run of the stage has written to already: a second pass (a second
    `evaluate`) replaces what the first wrote, instead of taking it for an unfinished run's."""
    generated: list[Sample] = field(default_factory=list)
    """Every sample `ladder.generate` returned in this run of the stage, all passes: `finish` counts
    the tokens and cost of those its records do not hold (a self-refine's drafts) in the stage's."""


@dataclass(frozen=True)
class Prompt:
    """One test example's prompt, plus what the stage wants recorded beside it (e.g. shots)."""

    example: Example
    messages: list[Message]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pass:
    """One round of model calls a stage will make, as `ladder check` counts it (Stage.plan)."""

    prompts: list[Prompt]
    gen: GenerationConfig | None = None
    """Its sampling settings (n, max_tokens); None: the stage's own (`ctx.gen`)."""
    added_tokens: int = 0
    """Prompt tokens each prompt will carry beyond its messages here: an earlier pass's answer,
    unknown before the run (count it at that pass's max_tokens, a ceiling)."""


@dataclass
class Plan:
    """What a stage will ask its model, for `ladder check`: its passes, and guards about its prompts."""

    passes: list[Pass]
    guards: list[Guard] = field(default_factory=list)
    note: str | None = None
    """Why the plan counts no call (a stage that implements only `run`): `ladder check` prints it."""
