"""Experiment YAML → validated pydantic objects.

Config is data: every section is a pydantic model with unknown keys rejected and each field
documented once, under the field. The sections that name an implementation (`model.backend`,
`metric.type`, `stages[].type`) are validated in a second pass by that implementation's own
`Config` class, found through the registries — which is what lets a plugin bring its own keys.

Every error names the file, the line, the dotted key and a fix; see `ConfigError`.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import re
import string
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ladder.errors import ConfigError


class Section(BaseModel):
    """Base for every config section: unknown keys are an error, not silently ignored. The
    docstring under each field becomes its description, which error messages quote as the fix.

    Strict types: YAML reads `yes`, `on`, `true` as booleans, and pydantic's lax mode would then
    turn `max_tokens: yes` into 1 and `temperature: true` into 1.0 without a word. A whole
    number is still accepted where a number is expected; YAML floats like `1e-3` are read as
    floats by the loader (`_Loader`), not as the strings plain YAML 1.1 makes of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, strict=True)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")  # generated names read `temperature=0.7`
"""Experiment and stage names: each becomes a folder name under results/, so no '/', no '..',
no leading '.' or '-' (which would escape the results folder, hide the folder or read as an option)."""


def check_name(value: str | None) -> str | None:
    """A name that is one safe folder name, or an error saying which characters are allowed."""
    if value is not None and not NAME_PATTERN.fullmatch(value):
        raise PydanticCustomError(
            "unsafe_name", "is not a plain folder name: it names a folder under the results folder, so "
            "it may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit",
            {"fix": "use a plain name such as few_shot_8 (no '/', no '..', no leading '.')"})
    return value


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Providers' key prefixes (case matters: HF_TOKEN is a variable, hf_… a token), then the key's body.
_KEY_PREFIX = re.compile(r"(?:(?:sk|pk|rk|hf|gsk|xai|r8|ghp|gho|github_pat|glpat|nvapi|csk)[-_]|AIza)"
                         r"[A-Za-z0-9_\-]{16,}")


def looks_like_secret(value: str) -> bool:
    """Whether a config value that should be a variable name looks like a pasted API key: a
    provider's key prefix (sk-, hf_, AIza, ...), or long and switching between letters and digits
    as random keys do and variable names (OPENAI_API_KEY, my_key_2024) do not."""
    switches = sum(a.isdigit() != b.isdigit() for a, b in zip(value, value[1:]) if a.isalnum() and b.isalnum())
    return bool(_KEY_PREFIX.match(value)) or (
        len(value) >= 20 and any(c.islower() for c in value) and switches >= 6)


def check_env_name(value: str | None, default: str) -> str | None:
    """An environment variable's name; an error that never repeats the value when it is not one
    (it may be the key itself, which would then land in logs and terminal scrollback)."""
    if value is None or (ENV_NAME.fullmatch(value) and not looks_like_secret(value)):
        return value
    what = "looks like an API key, not" if looks_like_secret(value) else "is not"
    raise PydanticCustomError(
        "secret_in_config", f"{what} the name of an environment variable (the value is not shown here)",
        {"fix": f"take the key out of the config (and replace it with a new one if the file was shared "
                f"or committed), export it in your shell as {default}=..., and write api_key_env: {default}",
         "hide_input": True})


class GenerationConfig(Section):
    n: int = Field(1, ge=1, le=10_000)
    """Samples per prompt. Metrics average over a prompt's samples first, so n stays per example."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass; 1.0 disables it."""
    max_tokens: int = Field(32, ge=1, le=100_000)
    """Most new tokens per sample. Short outputs are cheap: set this near the longest real answer."""
    stop: list[str] = Field(default_factory=list)
    """Custom stop sequences. The stop-hit guard checks they actually fire."""
    seed: int | None = None
    """Sampling seed; defaults to the experiment seed."""

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        if any(s == "" for s in v):
            raise ValueError("an empty string is not a stop sequence")
        return v


class SubsampleConfig(Section):
    n: int | Literal["all"] = 300
    """Test examples to evaluate on. 300 is about the least for clean trends; 1,000 is safe."""
    seed: int | None = None
    """Seed of the random draw; defaults to the experiment seed. Recorded in manifest.json."""

    @field_validator("n")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1 (or 'all')")
        return v


class GuardsConfig(Section):
    stop_hit_threshold: float = Field(0.9, ge=0.0, le=1.0)
    """Warn when custom stops are set and fewer than this share of samples end on a stop or EOS."""
    min_n: int = Field(300, ge=1)
    """Warn below this many test examples: too few for clean trends."""
    max_n: int = Field(1000, ge=1)
    """Warn above this many test examples: more than a clean signal needs, and it costs more."""


class TaskConfig(Section):
    data: str | dict[str, str] | None = None
    """A local file (jsonl, json, csv, tsv, parquet; relative to this YAML file), a folder of
    such files, a Hugging Face hub data set id, or a mapping {split: file}."""
    hub_config: str | None = None
    """Configuration name of a hub data set (the second argument of `load_dataset`)."""
    train_split: str = "train"
    """Split that few-shot examples (and later SFT data) come from."""
    test_split: str = "test"
    """Split that is evaluated. When the data has only one split it is divided with `test_size`."""
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    """Share held out for test when the data has a single split (seeded by the experiment seed)."""
    target: str = "target"
    """Column holding the gold answer."""
    target_map: dict[str, str] | None = None
    """Maps raw target values to answer text, e.g. {0: negative, 1: positive}."""

    @field_validator("target_map", mode="before")
    @classmethod
    def _map_keys_as_text(cls, v: Any) -> Any:
        # 0/1- and true/false-labelled data are the common case, and YAML reads those keys as
        # numbers and booleans: keep them, in the text form `target_key` gives the data's values.
        if isinstance(v, dict):
            return {target_key(k) if isinstance(k, (bool, int, float)) else k: val for k, val in v.items()}
        return v

    id_field: str | None = None
    """Column with a stable example id; defaults to the row index within its split."""
    instruction: str = ""
    """System instruction: say exactly what is wanted and warn against the usual mistakes. With
    `{{ }}` in it, it is a Jinja template filled per example like `template`."""
    template: str = "{input}"
    """The user turn, with {field} placeholders naming data columns ({choices}: the example's
    choices as lettered lines), or a Jinja template when it contains `{{` or `{%`."""
    choices: list[str] | None = None
    """Answer options of a K-way task; every target must be one of them."""
    choices_field: str | None = None
    """Column holding each example's own answer options (a list, or text split on choices_sep):
    multiple choice where K and the options vary per example. Not with `choices`."""
    choices_sep: str | None = Field(None, min_length=1)
    """Separator that splits a choices_field holding text, e.g. ";" (pieces are trimmed)."""
    choices_add_target: bool = False
    """Add the target to its example's choices when it is not among them (TruthfulQA: the best
    answer among the incorrect ones), at a position seeded by the experiment seed and example id."""
    answer_format: Literal["text", "letter"] = "text"
    """text: the answer is the choice itself; letter: the answer is its letter (A, B, ...), the
    target becomes its letter and `choice` compares letters (MMLU style)."""
    custom: str | None = None
    """Escape hatch: 'module:function' returning a Task object, or rows (a list of dicts, or
    {split: list}) that the keys above then describe. Called with this section and, when it takes
    them, the YAML's folder (`base_dir`) and the experiment `seed`."""

    @field_validator("template")
    @classmethod
    def _template_parses(cls, v: str) -> str:
        from ladder.templates import fields

        fields(v)
        return v

    @field_validator("instruction")
    @classmethod
    def _instruction_parses(cls, v: str) -> str:
        from ladder.templates import fields, is_jinja

        if is_jinja(v):  # plain instructions are literal text, braces and all
            fields(v)
        return v

    @model_validator(mode="after")
    def _choices_fit(self) -> TaskConfig:
        if self.choices and self.choices_field:
            raise ValueError("give either `choices` (the same for every example) or `choices_field` "
                             "(a column of per-example choices), not both")
        if not self.choices_field and (self.choices_sep is not None or self.choices_add_target):
            raise ValueError("choices_sep and choices_add_target describe a choices_field: name the "
                             "column of per-example choices with task.choices_field")
        if self.answer_format == "letter" and not (self.choices or self.choices_field or self.custom):
            raise ValueError("answer_format: letter needs answer choices to letter: set task.choices "
                             "or task.choices_field")
        if self.answer_format == "letter" and self.choices and len(self.choices) > 26:
            raise ValueError(f"answer_format: letter gives the {len(self.choices)} choices letters A-Z, "
                             f"and there are only 26; use answer_format: text")
        return self

    @field_validator("choices")
    @classmethod
    def _choices_distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(v) < 2 or len(set(v)) != len(v)):
            raise ValueError("choices must list at least two distinct answers")
        return v


def target_key(value: Any) -> str:
    """The text under which a raw target value is looked up in task.target_map: the same for the
    YAML key `1`, the JSON value 1 and the CSV text "1" (and for `true` and true)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@functools.lru_cache(maxsize=256)  # asked once per data row: parse each template once
def template_fields(template: str) -> tuple[str, ...]:
    """The {field} names a template uses; a ValueError for a malformed template."""
    names = []
    try:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise ValueError(f"placeholder '{{{name}}}' must be a plain column name")
                names.append(name)
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); use {{field}} for columns and "
                         f"{{{{ }}}} for literal braces") from None
    return tuple(names)


class StageConfig(Section):
    """Keys every stage has; a stage's own Config subclasses this and adds its knobs."""

    type: str
    """Which rung: zero_shot, few_shot, ... (or a 'module:attr' plugin)."""
    name: str | None = None
    """Row name in the table and folder name; defaults to the type. Needed when a type repeats."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        return check_name(v)

    model: dict[str, Any] | None = None
    """Overrides of the experiment's `model` section for this stage only."""
    generation: dict[str, Any] | None = None
    """Overrides of the experiment's `generation` section for this stage only."""
    skip: str | None = Field(None, min_length=1)
    """Leave this rung out, saying why (e.g. "no reward model yet"); the reason is recorded."""

    def generation_defaults(self) -> dict[str, Any]:
        """Sampling settings this stage type needs unless its own `generation:` says otherwise
        (best_of_n samples at temperature 1 even when the experiment decodes greedily)."""
        return {}


class EscalateConfig(Section):
    target: float
    """The metric value that answers the question; `ladder climb` stops at the first rung reaching it."""
    by: Literal["ci_low", "value"] = "ci_low"
    """What must reach the target: the 95% CI's lower bound (default: the rung surely reaches it)
    or the point estimate."""


class ExperimentConfig(Section):
    name: str
    """Experiment name; results go to <results_dir>/<name>/."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        return check_name(v)

    description: str = ""
    """Free text: the question this experiment answers."""
    seed: int = 0
    """Default seed for the subsample, shot selection, splitting and sampling."""
    results_dir: str = "results"
    """Where results go, relative to the working directory."""
    cache_dir: str | None = None
    """Model-call cache folder; defaults to $LADDER_CACHE_DIR or ~/.cache/ladder."""
    task: TaskConfig
    """What to evaluate: data, prompt and answers."""
    metric: dict[str, Any] | str | None = None
    """How to score a completion: a metric type or {type: ..., options}. Defaults to `choice`
    for tasks with choices, else `exact_match`."""
    model: dict[str, Any] = Field(default_factory=lambda: {"backend": "hf", "name": "ladder-tiny"})
    """Default model for every stage: {backend: hf|openai|anthropic, name: ..., options}."""
    generation: GenerationConfig = GenerationConfig()
    """Default sampling settings for every stage."""
    subsample: SubsampleConfig = SubsampleConfig()
    """Which test examples every stage evaluates (the same ones, so stages compare pairwise)."""
    guards: GuardsConfig = GuardsConfig()
    """Thresholds of the guardrails."""
    escalate: EscalateConfig | None = None
    """For `ladder climb`: {target: 0.8, by: ci_low}; the command line's --target overrides it."""
    stages: list[dict[str, Any]] = Field(min_length=1)
    """The rungs to run, in order: [{type: zero_shot}, {type: few_shot, k: 4}, ...]."""
    variants: dict[str, dict[str, Any] | None] | None = None
    """Named variants of this experiment, run on the same test examples and compared pairwise
    with the baseline: name -> overrides with dotted keys as `--set` takes them, e.g.
    {terse: {task.instruction: "Answer with one word."}}. See ladder/variants.py."""
    sweep: dict[str, list[Any]] | None = None
    """A grid of variants: dotted key -> values, e.g. {generation.temperature: [0, 0.7]}; each
    point is named from its values (`temperature=0.7`) and crossed with `variants`."""
    models: list[dict[str, Any] | str] | None = None
    """Shorthand for a sweep over `model`: a list of model mappings or model names."""
    baseline: str | None = None
    """The variant every other is compared with (paired, same examples); default the first."""

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in v or {}:
            if not VARIANT_NAME.fullmatch(str(name)):
                raise PydanticCustomError(
                    "unsafe_name", f"variant name '{name}' is not a plain folder name: it names a "
                    "folder under the results folder, so it may hold only letters, digits and "
                    "'_', '.', '-', '=', ',', '+', and must start with a letter or digit",
                    {"fix": "use a plain name such as terse or temp_0.7"})
        return v

    @field_validator("sweep")
    @classmethod
    def _sweep_lists(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        for key, values in (v or {}).items():
            if not values:
                raise PydanticCustomError("empty_sweep", f"sweep over '{key}' lists no values",
                                          {"fix": f"give '{key}' at least one value, or drop it"})
        return v


class Experiment:
    """A validated experiment: the top-level config plus each plugin section validated by its
    implementation's Config class. `source` is the YAML file (for relative paths and errors)."""

    def __init__(self, config: ExperimentConfig, metric: BaseModel, model: BaseModel,
                 stages: list[StageConfig], source: Path | None, raw: dict[str, Any]):
        self.config = config
        self.metric = metric
        self.model = model
        self.stages = stages
        self.source = source
        self.raw = raw

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def results_path(self) -> Path:
        return Path(self.config.results_dir) / self.config.name

    def stage_generation(self, stage: StageConfig) -> GenerationConfig:
        merged = {**self.config.generation.model_dump(), **stage.generation_defaults(),
                  **(stage.generation or {})}
        if merged.get("seed") is None:
            merged["seed"] = self.config.seed
        return GenerationConfig(**merged)

    def stage_model(self, stage: StageConfig) -> BaseModel:
        if not stage.model:
            return self.model
        from ladder.registry import BACKENDS

        merged = {**self.model.model_dump(), **stage.model}
        if "backend" in stage.model and stage.model["backend"] != self.model.backend:
            merged = dict(stage.model)
        cls = BACKENDS.get(merged.get("backend", "hf"))
        return cls.Config(**merged)

    def resolved(self) -> dict[str, Any]:
        """The full config with defaults filled in: what experiment.yaml records."""
        out = self.config.model_dump(mode="json")
        out["metric"] = self.metric.model_dump(mode="json")
        out["model"] = self.model.model_dump(mode="json")
        out["stages"] = [s.model_dump(mode="json") for s in self.stages]
        return out


# ---------------------------------------------------------------------------------------------
# Loading


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that `1e-3` and `2e5` are floats (YAML 1.1 wants a dot,
    `1.0e-3`, and reads them as strings, which strict float fields would then refuse)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def load_experiment(path: str | Path, overrides: list[str] = ()) -> Experiment:
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", where=where,
                          fix="check the path; configs/quickstart.yaml is a working example") from None
    except UnicodeDecodeError as exc:
        if exc.object.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte-order mark
            raise ConfigError("UTF-16 text, not UTF-8", where=where,
                              fix=f"save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8 '{path.name}' > "
                                  f"'{path.stem}.utf8{path.suffix}'") from None
        raise ConfigError(f"not valid UTF-8 text (byte {exc.start})", where=where,
                          fix="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", where=where) from None
    try:
        raw = _yaml(text)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc)
        start = getattr(exc, "context_mark", None)
        if getattr(exc, "context", None) and start is not None and (mark is None or start.line != mark.line):
            # The parser notices a missing ']' or quote lines later; where the construct began is
            # usually where the mistake is.
            problem = f"{problem}, {exc.context} that starts on line {start.line + 1}"
        fix = "indent with spaces: YAML does not allow tabs" if "'\\t'" in problem else \
            "check indentation, colons and quoting around that line"
        raise ConfigError(f"malformed YAML ({problem})", where=at, fix=fix) from None
    if not isinstance(raw, dict):
        raise ConfigError("the file must be a YAML mapping of keys to values", where=where,
                          fix="start from configs/quickstart.yaml")
    _no_duplicate_keys(root, where)
    raw.setdefault("name", path.stem)
    for item in overrides:
        try:
            apply_override(raw, item)
        except ConfigError as exc:
            raise ConfigError(exc.message, where=f"{where} (--set {item})", field=exc.field,
                              fix=exc.fix) from None
    return validate(raw, source=path, root=root, overrides=overrides)


def _no_duplicate_keys(node: Any, where: str, loc: tuple = ()) -> None:
    """YAML keeps the last of two equal keys and drops the first without a word: a second
    `stages:` or `generation:` further down would silently replace the first. Refuse instead."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                raise ConfigError(f"key '{key}' appears twice (first on line {first[key]}); YAML would "
                                  f"silently keep only this one", where=f"{where}:{line}",
                                  field=_dotted((*loc, key)), fix="merge the two into one key")
            first[key] = line
            _no_duplicate_keys(value_node, where, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, where, (*loc, i))


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `--set a.b.0.c=value` (value parsed as YAML) in place."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"'{item}' is not KEY=VALUE", fix="write e.g. --set subsample.n=500")
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"'{part}' is not an index of a list of {len(node)}", field=key,
                                  fix=f"use an index below {len(node)} (counting from 0), like stages.0.k")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(parts[:i])}' is a {type(node).__name__}, not a section "
                              f"with keys", field=key,
                              fix=f"set '{'.'.join(parts[:i])}' itself, or check the key path")
        if last:
            try:
                node[part] = _yaml(value) if value != "" else ""
            except yaml.YAMLError as exc:
                raise ConfigError(f"the value is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                                  field=key,
                                  fix="quote it for the shell, e.g. --set 'task.choices=[yes, no]'") from None
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def validate(raw: dict[str, Any], source: Path | None = None, root: Any = None,
             overrides: list[str] = ()) -> Experiment:
    token = _OVERRIDES.set(tuple(overrides))
    try:
        return _validate(raw, source, root)
    finally:
        _OVERRIDES.reset(token)


def _validate(raw: dict[str, Any], source: Path | None, root: Any) -> Experiment:
    from ladder.registry import BACKENDS, METRICS, STAGES

    where = str(source) if source else "<config>"
    errors: list[str] = []

    def check(cls: type[BaseModel], data: Any, prefix: tuple) -> BaseModel | None:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors.extend(_describe(exc, cls, prefix, where, root))
            return None

    def lookup(registry, name: Any, loc: tuple):
        if not isinstance(name, str):
            errors.append(_one(where, root, loc, f"must be a name, got {name!r}",
                               f"use one of: {', '.join(registry.names())}"))
            return None
        try:
            return registry.get(name, field=_dotted(loc))
        except ConfigError as exc:
            errors.append(_one(where, root, loc, exc.message, exc.fix))
            return None

    config = check(ExperimentConfig, raw, ())
    if config is None:
        raise ConfigError(" ".join(errors))

    # Per-example choices (choices_field) count; a custom task's are only known once it has run.
    task_choices = config.task.choices or config.task.choices_field
    metric_raw = config.metric or ("choice" if task_choices else "exact_match")
    if isinstance(metric_raw, str):
        metric_raw = {"type": metric_raw}
    metric = None
    metric_cls = lookup(METRICS, metric_raw.get("type"), ("metric", "type"))
    if metric_cls is not None:
        metric = check(metric_cls.Config, metric_raw, ("metric",))
        if metric is not None and metric_cls.needs_probabilities and not task_choices \
                and not config.task.custom:
            errors.append(_one(where, root, ("metric", "type"),
                               f"metric '{metric.type}' reads the model's probabilities of the answer "
                               f"choices, and the task has no `choices`",
                               "list the answers under task.choices (or name a column of per-example "
                               "choices with task.choices_field), or use a text metric"))
    probability_metric = metric_cls is not None and metric_cls.needs_probabilities

    model = None
    backend_cls = lookup(BACKENDS, config.model.get("backend", "hf"), ("model", "backend"))
    if backend_cls is not None:
        model = check(backend_cls.Config, {"backend": "hf", **config.model}, ("model",))

    stages: list[StageConfig] = []
    seen: dict[str, int] = {}
    classes: dict[str, type] = {}
    for i, stage_raw in enumerate(config.stages):
        if not isinstance(stage_raw, dict) or "type" not in stage_raw:
            errors.append(_one(where, root, ("stages", i), "each stage needs a `type`",
                               f"write e.g. '- type: zero_shot' (types: {', '.join(STAGES.names())})"))
            continue
        stage_cls = lookup(STAGES, stage_raw["type"], ("stages", i, "type"))
        if stage_cls is None:
            continue
        stage = check(stage_cls.Config, stage_raw, ("stages", i))
        if stage is None:
            continue
        name = stage.name or stage.type
        check_metric = getattr(stage_cls, "check_metric", None)  # e.g. best_of_n's select: majority
        problem = check_metric(stage, metric_cls) if check_metric and metric_cls is not None else None
        if problem:
            errors.append(_one(where, root, ("stages", i, problem[0]), *problem[1:]))
        if name in seen:
            errors.append(_one(where, root, ("stages", i, "name"),
                               f"stage name '{name}' is used twice (also stages.{seen[name]})",
                               "give repeated stage types distinct `name:` values"))
        upstream = (stage.model or {}).get("from_stage")
        problem = _from_stage_problem(upstream, stage, i, seen, classes, stages, config.stages)
        if problem:
            errors.append(_one(where, root, ("stages", i, "model", "from_stage"), *problem))
        for key, named in nested_from_stage(stage_raw):
            # A scorer's `from_stage:` (pm) names an earlier stage that trained a reward model.
            why = ("is not an earlier stage" if named not in seen else
                   "did not train a reward model" if not getattr(classes[named], "produces_reward_model", False)
                   else f"is skipped ({stages[seen[named]].skip})" if stages[seen[named]].skip else None)
            if why:
                rms = [n for n, c in classes.items() if getattr(c, "produces_reward_model", False)]
                errors.append(_one(where, root, ("stages", i, *key), f"stage '{named}' {why}",
                                   f"name an earlier reward_model stage ({', '.join(rms) or 'none yet'})"))
        from_rl = upstream in seen and stages[seen[upstream]].type == "rl"  # its model is an RL policy
        if probability_metric and (stage.type == "rl" or from_rl):
            # Refused before anything runs: the number would look meaningful and be wrong.
            errors.append(_one(where, root, ("stages", i, "type" if stage.type == "rl" else "model"),
                               f"stage '{name}' evaluates an RL-trained policy, and metric "
                               f"'{metric_raw.get('type')}' reads its token probabilities as if they "
                               f"were calibrated. RL sharpens a policy's probabilities toward what the "
                               f"reward liked, so only its top-1 answers mean anything",
                               "use a top-1 metric (choice, exact_match, ...) for this stage's "
                               "experiment, or read probabilities from the model before RL"))
        seen[name] = i
        classes[name] = stage_cls
        stages.append(stage.model_copy(update={"name": name}))
        if stage.generation:
            check(GenerationConfig, {**config.generation.model_dump(), **stage.generation},
                  ("stages", i, "generation"))
        if stage.model and model is not None:
            # Checked now like the top-level model (typos, strict types), not when the stage starts.
            merged = {**model.model_dump(), **stage.model}
            if stage.model.get("backend", model.backend) != model.backend:
                merged = dict(stage.model)
            stage_backend = lookup(BACKENDS, merged.get("backend", "hf"), ("stages", i, "model", "backend"))
            if stage_backend is not None:
                check(stage_backend.Config, merged, ("stages", i, "model"))

    if errors:
        raise ConfigError(" ".join(errors))
    return Experiment(config, metric, model, stages, source, copy.deepcopy(raw))


def nested_from_stage(raw: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, stage name) of every `from_stage` inside a stage's config but its own `model:`."""
    out: list[tuple[tuple, str]] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k == "from_stage" and path and isinstance(v, str):
                out.append(((*path, k), v))
            elif not (k == "model" and not path):
                out += nested_from_stage(v, (*path, k))
    elif isinstance(raw, list):
        for j, v in enumerate(raw):
            out += nested_from_stage(v, (*path, j))
    return out


def _from_stage_problem(upstream: Any, stage: StageConfig, i: int, seen: dict[str, int],
                        classes: dict[str, type], earlier: list[StageConfig],
                        raw_stages: list[Any]) -> tuple[str, str] | None:
    """(message, fix) when `model.from_stage` cannot supply this stage a model, else None."""
    if upstream is None:
        return None
    trainers = [n for n, cls in classes.items() if getattr(cls, "produces_model", True)]
    hint = f"earlier stages that train a model: {', '.join(trainers)}" if trainers else \
        "put a training stage such as sft before this one"
    if upstream not in seen:
        later = [s.get("name") or s.get("type") for s in raw_stages[i + 1:] if isinstance(s, dict)]
        where = "comes after this stage" if upstream in later else "is not a stage of this experiment"
        return f"stage '{upstream}' {where}, so it has no model to give", f"name an earlier stage ({hint})"
    source = earlier[seen[upstream]]
    if not getattr(classes[upstream], "produces_model", True):
        return (f"stage '{upstream}' is a {source.type} stage, which evaluates a model but does not "
                f"produce one", f"name a stage that trains a model ({hint}), or drop from_stage")
    if source.skip and not stage.skip:
        # A skipped stage never runs, so even an earlier run's model is not picked up.
        return (f"stage '{upstream}' is skipped ({source.skip}), so it produces no model for this stage",
                f"remove `skip:` from stage '{upstream}', or skip this stage too")
    return None


# ---------------------------------------------------------------------------------------------
# Error messages with the line of the offending key

_OVERRIDES: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("overrides", default=())
"""The `--set` items of the config being validated: an error in a key they set points at the
command line, not at a line of the file that never held that value."""


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _line_of(root: Any, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node along `loc` (the key itself when it exists)."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line if line else (node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _one(where: str, root: Any, loc: tuple, message: str, fix: str | None) -> str:
    dotted = _dotted(loc)
    for item in _OVERRIDES.get():
        key, _, value = item.partition("=")
        if looks_like_secret(value):
            item = f"{key}=<not shown>"  # a key pasted on the command line is not printed back
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return ConfigError(message, where=f"{where} (--set {item})", field=dotted, fix=fix).render()
    line = _line_of(root, loc) if root is not None else None
    return ConfigError(message, where=f"{where}:{line}" if line else where,
                       field=dotted, fix=fix).render()


def _allowed_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model that `loc` (minus its last part) points into."""
    target: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return []
        field = target.model_fields.get(part)
        if field is None:
            return []
        target = _unwrap(field.annotation)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _describe(exc: ValidationError, cls: type[BaseModel], prefix: tuple, where: str,
              root: Any) -> list[str]:
    out = []
    by_field: dict[tuple, list[dict[str, Any]]] = {}
    booleans = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "string_type" and isinstance(err.get("input"), bool) and loc and isinstance(loc[-1], int):
            booleans.append(err)  # `choices: [yes, no]`
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(cls, loc)
            fix = "remove it or fix its spelling" + (
                f" (allowed here: {', '.join(allowed)})" if allowed else "")
            out.append(_one(where, root, prefix + loc, "unknown key", fix))
        elif kind == "missing":
            out.append(_one(where, root, prefix + loc, "required key is missing", "add it"))
        elif "fix" in (err.get("ctx") or {}):  # our own PydanticCustomError, which brings its fix
            got = "" if err["ctx"].get("hide_input") else f" (got {err['input']!r})"
            out.append(_one(where, root, prefix + loc, err["msg"] + got, err["ctx"]["fix"]))
        else:
            by_field.setdefault(_field_loc(cls, loc)[0], []).append(err)
    # A value that fits no member of a union fails once per member ('subsample.n.int',
    # "subsample.n.literal['all']"): say it once, as what the field accepts.
    for loc, errs in by_field.items():
        info = _field_loc(cls, loc)[1]
        got = errs[0].get("input")
        shown = repr(got) if len(repr(got)) <= 60 else type(got).__name__
        expected = _expected(info) if info is not None else None
        if len(errs) > 1 and expected:
            msg = f"must be {expected}"
        else:
            msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping",
                         errs[0]["msg"].removeprefix("Value error, "))
        fix = _fix(loc, info, expected)
        said = _boolean_where_other(errs[0], loc, expected, root, prefix, fix)
        if said:
            out.append(_one(where, root, prefix + loc, *said))
            continue
        if isinstance(got, str) and expected and "number" in expected and _NUMBER.fullmatch(got.strip()):
            fix = f"write the number without quotes ({loc[-1]}: {got.strip()}), which YAML reads as text"
        out.append(_one(where, root, prefix + loc, f"{msg} (got {shown})", fix))
    return out + _yaml_booleans(booleans, prefix, where, root)


def _field_loc(cls: type[BaseModel], loc: tuple) -> tuple[tuple, Any]:
    """The error location without pydantic's union-member tag, and the field it ends at (or None).

    For a union field pydantic reports one error per member tried, the member's name appended to
    the location ('n', 'int'); everything from that tag on is cut."""
    target: Any = cls
    info = None
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return loc, info
        info = target.model_fields.get(part)
        if info is None:
            return loc, None
        if len(_members(info.annotation)) > 1:
            return loc[:depth + 1], info
        target = _unwrap(info.annotation)
    return loc, info


def _members(annotation: Any) -> list[Any]:
    """The non-None members of a union (one item for anything else)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _kind(annotation: Any) -> str | None:
    """What a YAML value of this type looks like, in words; None when it says nothing useful."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        values = typing.get_args(annotation)
        return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(repr(v) for v in values)
    if origin in (Union, types.UnionType):
        kinds = [_kind(a) for a in _members(annotation)]
        return " or ".join(kinds) if all(kinds) else None
    if origin is list:
        return "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(annotation)


def _expected(info: Any) -> str | None:
    """What the field accepts: its type and bounds, e.g. 'a whole number from 1 to 10,000'."""
    kind = _kind(info.annotation)
    if kind is None:
        return None
    bounds = {}
    for meta in info.metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if "ge" in bounds and "le" in bounds:
        kind += f" from {bounds['ge']:,} to {bounds['le']:,}"
    else:
        if low is not None:
            kind += f" {'at least' if 'ge' in bounds else 'above'} {low:,}"
        if high is not None:
            kind += f"{' and' if low is not None else ''} {'at most' if 'le' in bounds else 'below'} {high:,}"
    if "min_length" in bounds:
        kind += f" with at least {bounds['min_length']} item{'s' if bounds['min_length'] != 1 else ''}"
    if "max_length" in bounds:
        kind += f" with at most {bounds['max_length']} items"
    return kind


def _fix(loc: tuple, info: Any, expected: str | None) -> str:
    """The fix for a bad value: what the field takes and what it is for (its docstring)."""
    doc = " ".join((info.description or "").split()) if info is not None else ""
    doc = first_sentence(doc).rstrip(".")
    name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if expected and doc:
        return f"give {expected} ({name}: {doc[0].lower() + doc[1:]})"
    if expected:
        return f"give {expected}"
    return f"see what {name} takes: {doc}" if doc else \
        "see the field's documentation in ladder/config.py or the README"


_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:e\.g|i\.e|etc|vs|cf|approx)\.$", re.IGNORECASE)


def first_sentence(text: str) -> str:
    """The first sentence of a docstring, whole: the period of 'e.g.' or 'i.e.', or one inside
    brackets or quotes ({0: a. b}, "no reward model yet."), does not end it."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif (ch in ".!?" and not depth and not quoted and text[i + 1:i + 2] in ("", " ")
              and not _ABBREVIATION.search(text[:i + 1])):
            return text[:i + 1]
    return text


def _node_at(root: Any, loc: tuple) -> Any:
    """The YAML node at `loc`, or None when the file does not hold it (defaults, --set)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def _as_written(root: Any, loc: tuple, value: Any) -> str:
    """How the user wrote a value: the YAML text when the file has it (`yes`), else YAML's form."""
    node = _node_at(root, loc) if root is not None else None
    if isinstance(node, yaml.ScalarNode) and not _OVERRIDES.get():
        return node.value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _yaml_booleans(errors: list[dict[str, Any]], prefix: tuple, where: str, root: Any) -> list[str]:
    """Messages for text items that YAML read as booleans (`choices: [yes, no]`), one per list: the
    plain 'Input should be a valid string (got True)' hides that `yes` was never text."""
    out = []
    by_list: dict[tuple, list[tuple[int, bool]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        by_list.setdefault(loc[:-1], []).append((loc[-1], err["input"]))
    for loc, items in by_list.items():
        written = [_as_written(root, prefix + loc + (i,), v) for i, v in items]
        values = [str(v).lower() for _, v in items]
        node = _node_at(root, prefix + loc) if root is not None else None
        every = [n.value for n in node.value] if isinstance(node, yaml.SequenceNode) and \
            all(isinstance(n, yaml.ScalarNode) for n in node.value) else written
        quoted = ", ".join(f'"{w}"' for w in every)
        name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        plural = len(items) > 1
        out.append(_one(where, root, prefix + loc,
                        f"YAML read {', '.join(written)} as {'booleans' if plural else 'a boolean'} "
                        f"({', '.join(values)}), not text: unquoted yes, no, on, off, true and false "
                        f"are booleans in YAML",
                        f"quote {'them' if plural else 'it'}: {name}: [{quoted}]"))
    return out


def _boolean_where_other(err: dict[str, Any], loc: tuple, expected: str | None, root: Any,
                         prefix: tuple, fix: str) -> tuple[str, str] | None:
    """(message, fix) for a YAML boolean given to a number or text field (`max_tokens: yes`)."""
    got = err.get("input")
    if not isinstance(got, bool):
        return None
    written = _as_written(root, prefix + loc, got)
    name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    said = f"YAML read {written} as the boolean {str(got).lower()}"
    if expected and "number" not in expected and "text" in expected:
        return f"{said}, not text", f'quote it: {name}: "{written}"'
    return f"{said}, not {expected or 'a value of this type'}", fix
