"""Name → implementation, resolved lazily.

Each registry maps a YAML `type:` (or `backend:`) word to a "module:attr" string, imported only
when that name is used — so listing stages does not import torch. Third-party packages add
entries through the entry-point groups `ladder.stages`, `ladder.metrics` and `ladder.backends`;
a YAML value that itself looks like "module:attr" is imported directly (the escape hatch).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from ladder.errors import ConfigError


def import_object(target: str, *, field: str | None = None) -> Any:
    """Import "package.module:attr"; a clear ConfigError when it is not there."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"'{target}' is not an import path", field=field,
                          fix="write it as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module '{module_name}' ({exc})", field=field,
                          fix="check the module is installed or on PYTHONPATH") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no attribute '{attr}'", field=field,
                          fix="check the name after the colon") from None


class Registry:
    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._targets = dict(builtins)

    @cache  # noqa: B019 - registries are module-level singletons
    def _plugins(self) -> dict[str, str]:
        from importlib.metadata import entry_points

        return {ep.name: ep.value for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted({**self._plugins(), **self._targets})

    def get(self, name: str, *, field: str | None = None) -> Any:
        if ":" in name:
            return import_object(name, field=field)
        target = self._targets.get(name) or self._plugins().get(name)
        if target is None:
            raise ConfigError(
                f"unknown {self.kind} '{name}'", field=field,
                fix=f"use one of: {', '.join(self.names())} (or a 'module:attr' import path)")
        return import_object(target, field=field)


STAGES = Registry("stage type", "ladder.stages", {
    "zero_shot": "ladder.stages.zero_shot:ZeroShot",
    "few_shot": "ladder.stages.few_shot:FewShot",
    "best_of_n": "ladder.stages.best_of_n:BestOfN",
    "sft": "ladder.stages.sft:SFT",
    "rl": "ladder.stages.rl:RL",
    "reward_model": "ladder.stages.reward_model:RewardModel",
})

METRICS = Registry("metric type", "ladder.metrics", {
    "exact_match": "ladder.metrics.match:ExactMatch",
    "includes": "ladder.metrics.match:Includes",
    "regex": "ladder.metrics.match:RegexMatch",
    "numeric": "ladder.metrics.numeric:Numeric",
    "choice": "ladder.metrics.choice:Choice",
    "python": "ladder.metrics.python:PythonMetric",
    "choice_prob": "ladder.metrics.probability:ChoiceProb",
})

SCORERS = Registry("scorer type", "ladder.scorers", {
    "classifier": "ladder.scorers.classifier:ClassifierScorer",
    "judge": "ladder.scorers.judge:JudgeScorer",
    "pm": "ladder.scorers.pm:PMScorer",
})
"""Scorers that run a model (ladder/scorers): best_of_n's `scorer:`, rl's `reward:`, and task metrics."""

BACKENDS = Registry("backend", "ladder.backends", {
    "hf": "ladder.backends.hf:HFBackend",
    "openai": "ladder.backends.openai:OpenAIBackend",
    "anthropic": "ladder.backends.anthropic:AnthropicBackend",
})

REGISTRIES = {"stage": STAGES, "metric": METRICS, "backend": BACKENDS}


def register(kind: str, name: str, target: str) -> None:
    """Make `name` usable as a YAML stage `type:`, metric `type:` or model `backend:` in this
    process: `ladder.register("metric", "f1", "my_metrics:F1")` (kind: stage, metric or backend).

    What an installed package declares once, as an entry point, instead (then every process,
    `ladder run` included, sees it):  [project.entry-points."ladder.metrics"]  f1 = "my_metrics:F1".
    The target is imported only when the name is used."""
    registry = REGISTRIES.get(kind)
    if registry is None:
        raise ValueError(f"kind must be one of {', '.join(REGISTRIES)}, not '{kind}'")
    if ":" not in target:
        raise ValueError(f"target '{target}' must be a 'module:attr' import path")
    registry._targets[name] = target
