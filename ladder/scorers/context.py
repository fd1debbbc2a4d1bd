"""What a scorer reads of the stage it scores for. ladder.stages.StageContext is one; scorers and
the task metric's builder (metrics/judged.py) name this protocol rather than StageContext, so the
scoring layer does not depend on the stages layer that builds on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ladder.backends.base import BackendPool
    from ladder.cache import Cache
    from ladder.config import Experiment, StageConfig
    from ladder.metrics import Metric
    from ladder.tasks import TaskLike
    from ladder.types import Example


class ScoringContext(Protocol):
    experiment: Experiment
    """The whole experiment (its `model:` is a judge's default backend)."""
    stage: StageConfig
    """The config of the stage being scored."""
    task: TaskLike
    examples: list[Example]
    """The examples the stage scores."""
    metric: Metric
    """The task metric."""
    cache: Cache | None
    """The model-call cache a judge's calls go through."""
    pool: BackendPool | None
    """Backends shared across the run, so a judge on the run's model reuses its client."""
    produced: dict[str, dict[str, Any]]
    """What earlier stages produced (a trained model's folder, a preference model), by stage name."""
