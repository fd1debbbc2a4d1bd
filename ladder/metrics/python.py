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
    extracts = True  # when the function returns a Score with `extracted`; best_of_n warns when none did

    @classmethod
    def scoring_code(cls, config: PythonConfig) -> list[object]:
        """The user's function too: editing its file must not reuse scores the old code gave."""
        return [cls, import_object(config.function, field="metric.function")]

    def __init__(self, config: PythonConfig):
        super().__init__(config)
        self.fn = import_object(config.function, field="metric.function")

    @property
    def name(self) -> str:
        return self.config.function.rpartition(":")[2]

    def score(self, ex: Example, completion: str) -> Score:
        out = self.fn(ex, completion)
        return out if isinstance(out, Score) else Score(float(out))
