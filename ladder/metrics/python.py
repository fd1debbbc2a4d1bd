"""The escape hatch: any Python function `fn(example, completion) -> float | bool | Score`."""

from __future__ import annotations

from typing import Literal

from ladder.metrics import Metric, MetricConfig
from ladder.registry import import_object
from ladder.types import Example, Score


class PythonConfig(MetricConfig):
    type: Literal["python"] = "python"
    function: str
    """Import path 'package.module:function' of fn(example, completion)."""


class PythonMetric(Metric):
    Config = PythonConfig

    def __init__(self, config: PythonConfig):
        super().__init__(config)
        self.fn = import_object(config.function, field="metric.function")

    @property
    def name(self) -> str:
        return self.config.function.rpartition(":")[2]

    def score(self, ex: Example, completion: str) -> Score:
        out = self.fn(ex, completion)
        return out if isinstance(out, Score) else Score(float(out))
