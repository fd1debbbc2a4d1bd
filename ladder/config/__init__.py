"""Experiment YAML → validated pydantic objects.

- `schema`: the sections (what plugins import: `Section`, `StageConfig`, `GenerationConfig`, ...),
  each field documented by the docstring under it.
- `experiment`: a validated `Experiment` and the rules resolving a stage's model, generation,
  seeds and paths from it.
- `load`: the YAML file and `--set` overrides → `load_experiment`.
- `validate`: plugin sections by their own Config classes, and the checks across stages.
- `prose`: pydantic's errors → one paragraph naming the file, line, key and fix (`ConfigError`).

Everything is importable from here: `from ladder.config import StageConfig, load_experiment`.
"""

from ladder.config.experiment import Experiment, backend_config, merge_model, resolve_path
from ladder.config.load import apply_override, load_experiment
from ladder.config.prose import ConfigSource, first_sentence
from ladder.config.schema import (
    ENV_NAME, NAME_PATTERN, EscalateConfig, ExperimentConfig, FromStageOutputs, GenerationConfig, GuardsConfig,
    RespondentConfig, Section, StageConfig, SubsampleConfig, TaskConfig, check_env_name, check_name, looks_like_secret, target_key,
    template_fields)
from ladder.config.validate import nested_from_stage, rl_probability_problem, validate

__all__ = [
    "ENV_NAME", "NAME_PATTERN", "ConfigSource", "EscalateConfig", "Experiment", "ExperimentConfig",
    "FromStageOutputs", "GenerationConfig", "GuardsConfig", "RespondentConfig", "Section", "StageConfig", "SubsampleConfig", "TaskConfig",
    "apply_override", "backend_config", "check_env_name", "check_name", "first_sentence",
    "load_experiment", "looks_like_secret", "merge_model", "nested_from_stage", "resolve_path",
    "rl_probability_problem", "target_key", "template_fields", "validate",
]
