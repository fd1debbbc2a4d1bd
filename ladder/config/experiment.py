"""A validated experiment, and the rules that turn its sections into what a stage runs with.

Each rule is written once here: a model section with a stage's overrides becomes its backend's
Config (`backend_config`), a stage's generation settings are merged over the experiment's, a seed
left unset falls back to the experiment seed (`Experiment.seed_for`), and a path the config names
is read from the YAML file's folder (`resolve_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ladder.config.schema import ExperimentConfig, GenerationConfig, StageConfig

# Model sections are typed BaseModel here: each is a `ladder.backends.base.BackendConfig` subclass,
# and importing that module (which imports this package) would make a circle.
BackendConfig = BaseModel


def resolve_path(value: str | Path, base_dir: Path) -> Path:
    """A path as a config writes it: `~` expanded, a relative one read from `base_dir` (the YAML
    file's folder, so a config means the same files whatever folder it is run from)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def merge_model(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """A model section with `override` (a stage's `model:`, or a model a stage produced) on top.
    An override naming another backend replaces the base: its keys would not fit that backend."""
    if not override:
        return dict(base)
    if override.get("backend", base.get("backend")) != base.get("backend"):
        return dict(override)
    return {**base, **override}


def backend_config(base: dict[str, Any], override: dict[str, Any] | None = None) -> BackendConfig:
    """The one place a model section becomes its backend's Config (the class the registry names
    for its `backend:`); a ValidationError when a key does not fit."""
    from ladder.registry import BACKENDS

    merged = merge_model(base, override)
    return BACKENDS.get(merged.get("backend", "hf")).Config(**merged)


class Experiment:
    """A validated experiment: the top-level config plus each plugin section validated by its
    implementation's Config class. `source` is the YAML file (for relative paths and errors)."""

    def __init__(self, config: ExperimentConfig, metric: BaseModel, model: BackendConfig,
                 stages: list[StageConfig], source: Path | None, raw: dict[str, Any]):
        self.config = config
        self.metric = metric
        self.model = model
        self.stages = stages
        self.source = source
        self.raw = raw
        self.metric_label: str | None = None
        """The first metric's name when `metrics:` is a mapping (else the metric's own name)."""
        self.extra_metrics: dict[str, BaseModel] = {}
        """The further metrics of `metrics:` (name -> config): columns beside the row's value."""

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def results_path(self) -> Path:
        return Path(self.config.results_dir) / self.config.name

    def seed_for(self, seed: int | None) -> int:
        """A section's own seed, or the experiment seed when it sets none (what every `seed:`
        key of the config defaults to)."""
        return self.config.seed if seed is None else seed

    def path(self, value: str | Path) -> Path:
        """A file or folder the config names, relative to the YAML file's folder."""
        return resolve_path(value, self.base_dir)

    def stage_generation(self, stage: StageConfig) -> GenerationConfig:
        """The stage's sampling settings: its own `generation:` over its type's defaults over the
        experiment's, with the seed filled in."""
        merged = {**self.config.generation.model_dump(), **stage.generation_defaults(),
                  **(stage.generation or {})}
        merged["seed"] = self.seed_for(merged.get("seed"))
        return GenerationConfig(**merged)

    def stage_model(self, stage: StageConfig) -> BackendConfig:
        """The stage's model as configured (its `from_stage`, if any, not yet replaced by what that
        stage produced: the runner does that once it has)."""
        if not stage.model:
            return self.model
        return backend_config(self.model.model_dump(), stage.model)

    def stage_respondent(self, stage: StageConfig) -> Any:
        """The second model in the loop of a stage (its own `respondent:`, else the experiment's),
        or None: a RespondentConfig (ladder/metrics/redteam.py uses it)."""
        return getattr(stage, "respondent", None) or self.config.respondent

    def resolved(self) -> dict[str, Any]:
        """The full config with defaults filled in: what experiment.yaml records."""
        out = self.config.model_dump(mode="json")
        out["metric"] = self.metric.model_dump(mode="json")
        if self.extra_metrics:
            # `metrics:` holds it, first (taken before `metric:` is cleared: it was recorded as null)
            primary, out["metric"] = out["metric"], None
            out["metrics"] = {self.metric_label or self.metric.type: primary,
                              **{k: v.model_dump(mode="json") for k, v in self.extra_metrics.items()}}
        out["model"] = self.model.model_dump(mode="json")
        out["stages"] = [s.model_dump(mode="json") for s in self.stages]
        if self.config.plugins:  # as found: a file by its absolute path, so reading the results finds it
            out["plugins"] = [str(resolve_path(p, self.base_dir)) if p.endswith(".py") or "/" in p else p
                              for p in self.config.plugins]
        else:
            del out["plugins"]  # an experiment without plugins records what it always has
        return out
