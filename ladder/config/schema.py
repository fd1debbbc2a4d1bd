"""The config schema: the pydantic sections of an experiment YAML, which plugins import.

Config is data: every section is a pydantic model with unknown keys rejected and each field
documented once, under the field. The sections that name an implementation (`model.backend`,
`metric.type`, `stages[].type`) are validated in a second pass by that implementation's own
`Config` class (see `ladder.config.validate`) — which is what lets a plugin bring its own keys.

This module imports nothing of ladder's but the templates: a plugin's Config can
subclass `Section` or `StageConfig` without pulling in the loader or the validator.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ladder.templates import fields, is_jinja, template_fields  # noqa: F401 (template_fields: re-exported)


class Section(BaseModel):
    """Base for every config section: unknown keys are an error, not silently ignored. The
    docstring under each field becomes its description, which error messages quote as the fix.

    Strict types: YAML reads `yes`, `on`, `true` as booleans, and pydantic's lax mode would then
    turn `max_tokens: yes` into 1 and `temperature: true` into 1.0 without a word. A whole
    number is still accepted where a number is expected; YAML floats like `1e-3` are read as
    floats by the loader (`ladder.config.load`), not as the strings plain YAML 1.1 makes of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, strict=True)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")  # generated names read `temperature=0.7`
"""Experiment and stage names: each becomes a folder name under results/, so no '/', no '..',
no leading '.' or '-' (which would escape the results folder, hide the folder or read as an option)."""


def count_or_all(v: int | str) -> int | str:
    """A how-many field that also takes "all" (subsample.n, train_subsample): at least 1."""
    if isinstance(v, int) and v < 1:
        raise ValueError("must be at least 1 (or 'all')")
    return v


def older_name(data: Any, old: str, new: str, convert: Any) -> Any:
    """A before-validator's body for a renamed key: `old: x` is read as `new: convert(x)`, so configs
    written with the older name still work; both given and disagreeing is refused."""
    if not (isinstance(data, dict) and old in data):
        return data
    data = dict(data)
    value = convert(data.pop(old))
    if new in data and data[new] != value:
        raise ValueError(f"{old} is the older name of {new} and contradicts {new}: {data[new]}; keep only {new}")
    data[new] = value
    return data


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
        return count_or_all(v)


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
    target: str | None = "target"
    """Column holding the gold answer. null — or left out when the data has no `target` column —
    makes the task open-ended: no gold answers, scored by a judged metric (judge, classifier, pm,
    python)."""
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
        fields(v)
        return v

    @field_validator("instruction")
    @classmethod
    def _instruction_parses(cls, v: str) -> str:
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


class RespondentConfig(Section):
    """A second model in the loop (red-teaming): each completion of the rung's model is sent to it,
    and the metric scores its reply. See docs/redteam.md."""

    model: dict[str, Any]
    """The respondent (the fixed target), as overrides of the experiment's `model`, e.g. {backend:
    openai, name: gpt-4o-mini}. The rungs sample and train the experiment's model, never this one."""
    template: str = "{completion}"
    """Its user turn: {completion} (the rung model's output), {prompt}, and the task's data columns."""
    instruction: str | None = None
    """Its system prompt; none by default."""
    generation: GenerationConfig = GenerationConfig(max_tokens=64)
    """Its sampling: greedy by default, so a completion always gets the same reply (and the cache
    answers a repeat)."""

    @field_validator("template")
    @classmethod
    def _parses(cls, v: str) -> str:
        template_fields(v)  # a ValueError naming the problem, at YAML load time
        return v

    @field_validator("generation")
    @classmethod
    def _one_reply(cls, v: GenerationConfig) -> GenerationConfig:
        # The metric scores one reply per completion: more would be paid for and never read.
        if v.n != 1:
            raise ValueError(f"the respondent answers each completion once (n: 1), got n: {v.n}; "
                             "sample the rung's model more instead (its generation.n or best_of_n)")
        return v


class FromStageOutputs(Section):
    stage: str
    """An earlier stage of this experiment that answers the test examples (e.g. zero_shot)."""
    min_score: float = 1.0
    """Keep only its outputs that scored at least this under the task metric (its successes)."""


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
    respondent: RespondentConfig | None = None
    """This stage's respondent, instead of the experiment's `respondent:`."""

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
    plugins: list[str] = []
    """Local plugins to load first: .py files (relative to this YAML's folder; to the working
    directory for a config given as a dict) or module names, e.g. [my_stage.py, mypkg.metrics].
    Each runs once, as an import: its `ladder.register(...)` calls, and the Stage, Metric and
    Backend classes it defines (under the name their Config's Literal declares), are then usable
    by name here. See docs/extending.md, "A local plugin file"."""
    seed: int = 0
    """Default seed for the subsample, shot selection, splitting and sampling."""
    results_dir: str = "results"
    """Where results go, relative to the working directory."""
    cache_dir: str | None = None
    """Model-call cache folder; defaults to $LADDER_CACHE_DIR or ~/.cache/ladder."""
    task: TaskConfig
    """What to evaluate: data, prompt and answers."""
    metric: dict[str, Any] | str | None = None
    """How to score a completion: a metric type or {type: ..., options} — also a scorer as
    best_of_n's `scorer:` takes it ({type: judge | classifier | pm | python, ...}), which needs no
    gold answer. Defaults to `choice` for tasks with choices, else `exact_match`."""
    metrics: list[dict[str, Any] | str] | dict[str, dict[str, Any] | str] | None = None
    """Several metrics per row, instead of `metric:`: a list of specs, or a name -> spec mapping
    (names become summary.csv columns). The first is the row's value (climb's target, the Δ
    columns); each other one lands beside it as <name>, <name>_ci_low, <name>_ci_high — e.g. a
    second, held-out judge for a row selected by the first."""
    model: dict[str, Any] = Field(default_factory=lambda: {"backend": "hf", "name": "ladder-tiny"})
    """Default model for every stage: {backend: hf|openai|anthropic, name: ..., options}."""
    generation: GenerationConfig = GenerationConfig()
    """Default sampling settings for every stage."""
    respondent: RespondentConfig | None = None
    """A second model in the loop, for every stage: {model: {...}, template: "{completion}",
    instruction: ...}. Each completion is sent to it and the metric scores its reply (red-teaming:
    the rungs train the attacker, the respondent is the fixed target). See docs/redteam.md."""
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
