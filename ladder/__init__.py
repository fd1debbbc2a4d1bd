"""ladder: take an LLM research idea up a ladder of methods, cheapest first.

Importing ladder is cheap on purpose: torch, transformers and the API SDKs are imported inside
the functions that need them, so `ladder --help` and `import ladder` stay fast.

The names below are the public surface for plugin authors (docs/extending.md). Each is imported
the first time it is used (`ladder.Stage` imports ladder.stages then), so `import ladder` itself
loads nothing heavy:

  stages     Stage, StageConfig, StageContext, Prompt, evaluate; Plan and Pass (what `ladder
             check` counts: Stage.plan)
  passes     generate(ctx, prompts) → samples (cached, concurrent, costed), score(ctx, prompts,
             samples) → Records, finish(ctx, records) → StageResult: a stage that asks more than
             once (self-refine) is written with these; evaluate() is the three in one
  metrics    Metric, MetricConfig, Scorer (a metric that runs a model)
  backends   Backend, BackendConfig, Job
  values     Example, Message, Sample, Score, MetricValue, Guard, Record, StageResult,
             Products, Curve, Baseline
  errors     LadderError, ConfigError
  registry   register(kind, name, "module:attr") — what an installed package does through the
             entry-point groups ladder.stages / ladder.metrics / ladder.backends
  results    load("results/<exp>") → pandas DataFrames `stages` and `samples` (needs ladder[data])
  commands   run(config, set=..., only=..., variant=...) → those DataFrames, and check(config) → the
             plan: `ladder run` and `ladder check` from Python, raising LadderError instead of
             exiting (docs/python.md)

`ladder.testing` (a fake OpenAI/Anthropic server on 127.0.0.1) is public too: a testing aid for
backends and experiments that call APIs, without keys or network.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Stage": "ladder.stages", "StageContext": "ladder.stages", "Prompt": "ladder.stages",
    "evaluate": "ladder.stages", "Plan": "ladder.stages", "Pass": "ladder.stages", "StageConfig": "ladder.config",
    **dict.fromkeys(["generate", "score", "finish"], "ladder.stages.passes"),
    "Metric": "ladder.metrics", "MetricConfig": "ladder.metrics", "Scorer": "ladder.scorers",
    "Backend": "ladder.backends.base", "BackendConfig": "ladder.backends.base", "Job": "ladder.backends.base",
    **dict.fromkeys(["Example", "Message", "Sample", "Score", "MetricValue", "Guard", "Record", "StageResult",
                     "Products", "Curve", "Baseline"], "ladder.types"),
    "LadderError": "ladder.errors", "ConfigError": "ladder.errors",
    "register": "ladder.registry",
    "load": "ladder.frames",
    "run": "ladder.commands", "check": "ladder.commands",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # PEP 562: a public name is imported on first use, so `import ladder` stays light.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ladder' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
