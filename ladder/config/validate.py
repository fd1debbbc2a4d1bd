"""A raw config dict → an `Experiment`, or one ConfigError listing every problem found.

Two passes: the top-level schema (`ExperimentConfig`), then each section that names an
implementation (`metric.type`, `model.backend`, `stages[].type`) by that implementation's own
Config class, found through the registries. Then the checks across stages: names unique,
`from_stage` naming an earlier stage that produces what is asked of it, a stage's own metric
check (`Stage.check_metric`), and the rule that no probability metric reads an RL policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from ladder.config.experiment import Experiment, merge_model
from ladder.config.prose import ConfigSource, dotted_key
from ladder.config.schema import ExperimentConfig, GenerationConfig, StageConfig
from ladder.errors import ConfigError
from ladder.plugins import resolve_plugins
from ladder.store import RESERVED_NAMES


def rl_probability_problem(stage: str, metric: str, model: str | None = None) -> tuple[str, str]:
    """(message, fix) of the rule that a metric reading token probabilities (`needs_probabilities`)
    is refused on a policy the rl stage trained. Applied twice, with the same words: when the config
    is checked (an rl stage, or a stage whose `from_stage` is one) and when a stage starts (a model
    path that leads to an RL policy's folder, which its marker file says)."""
    return (f"stage '{stage}' evaluates an RL-trained policy{f' ({model})' if model else ''}, and metric "
            f"'{metric}' reads its token probabilities as if they were calibrated. RL sharpens a policy's "
            f"probabilities toward what the reward liked, so only its top-1 answers mean anything",
            "use a top-1 metric (choice, exact_match, ...), or read probabilities from the model before RL")


class Problems:
    """The problems found in a config so far, each one rendered sentence naming its key (through
    `src`, so a key a `--set` item wrote points at the command line). Every section is checked and
    all their problems are raised together, as one ConfigError."""

    def __init__(self, src: ConfigSource):
        self.src = src
        self.errors: list[str] = []

    def add(self, loc: tuple, message: str, fix: str | None) -> None:
        self.errors.append(self.src.error(loc, message, fix))

    def check(self, cls: type[BaseModel], data: Any, prefix: tuple) -> BaseModel | None:
        """`data` validated by `cls`; None (its problems added) when it is refused."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            self.errors.extend(self.src.describe(exc, cls, prefix))
            return None

    def lookup(self, registry: Any, name: Any, loc: tuple) -> Any:
        """The class `name` registers in `registry`; None (a problem added) when it names none."""
        if not isinstance(name, str):
            self.add(loc, f"must be a name, got {name!r}", f"use one of: {', '.join(registry.names())}")
            return None
        try:
            return registry.get(name, field=dotted_key(loc))
        except ConfigError as exc:
            self.add(loc, exc.message, exc.fix)
            return None

    def raise_any(self) -> None:
        if self.errors:
            raise ConfigError(" ".join(self.errors))


@dataclass
class Metrics:
    """The `metric:` / `metrics:` section, checked."""

    raw: dict[str, Any]
    """The task metric's spec (the first of `metrics:`, or `metric:` with its default filled in)."""
    loc: tuple
    """Where it sits in the YAML."""
    config: Any
    cls: Any
    primary: str | None
    """Its name in `metrics:`; None with `metric:`."""
    others: list[tuple[str, dict[str, Any], tuple]]
    """(name, raw spec, key path) of the other entries of `metrics:`."""
    extra: dict[str, Any]
    """The others' configs, by name."""

    @property
    def reads_probabilities(self) -> bool:
        return self.cls is not None and self.cls.needs_probabilities


@dataclass
class Stages:
    """The `stages:` section, checked: the valid stages in order, with their names' positions and classes."""

    stages: list[StageConfig] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    """Stage name → its index in `stages:`."""
    classes: dict[str, type] = field(default_factory=dict)
    """Stage name → its Stage class."""


def validate(raw: dict[str, Any], source: Path | None = None, root: Any = None,
             overrides: Sequence[str] = ()) -> Experiment:
    """The experiment `raw` describes. `source` is its YAML file and `root` that file's node tree
    (for line numbers); `overrides` the `--set` items already applied to `raw` (errors in the keys
    they set point at the command line)."""
    raw = resolve_plugins(raw, source)  # `plugins:` loaded, "module:attr" types named: before any lookup
    problems = Problems(ConfigSource(str(source) if source else "<config>", root, tuple(overrides)))
    config = problems.check(ExperimentConfig, raw, ())
    if config is None:
        problems.raise_any()
    metrics = check_metrics(config, problems)
    model = check_model(config, problems)
    stages = check_stages(config, metrics, model, problems)
    check_across(config, metrics, stages, problems)
    problems.raise_any()
    exp = Experiment(config, metrics.config, model, stages.stages, source, copy.deepcopy(raw))
    exp.metric_label, exp.extra_metrics = metrics.primary, metrics.extra
    return exp


def check_metrics(config: ExperimentConfig, problems: Problems) -> Metrics:
    """The task metric and the other `metrics:` columns, each by its own Config class."""
    from ladder.config.judged import is_scorer_type, judged_metric_problems
    from ladder.registry import METRICS, SCORERS

    # Per-example choices (choices_field) count; a custom task's are only known once it has run.
    task_choices = config.task.choices or config.task.choices_field

    def check_metric(metric_raw: dict[str, Any], loc: tuple) -> tuple[Any, Any]:
        """(config, class) of one metric spec, its problems added."""
        if is_scorer_type(metric_raw.get("type")):  # a judge, classifier or pm as the task metric
            metric_cls = problems.lookup(SCORERS, metric_raw["type"], (*loc, "type"))
        else:
            metric_cls = problems.lookup(METRICS, metric_raw.get("type"), (*loc, "type"))
        if metric_cls is None:
            return None, None
        metric = problems.check(metric_cls.Config, metric_raw, loc)
        for key, *rest in judged_metric_problems(metric, config):
            problems.add((*loc, *key), *rest)
        if metric is not None and metric_cls.needs_probabilities and not task_choices \
                and not config.task.custom:
            problems.add((*loc, "type"), f"metric '{metric.type}' reads the model's probabilities of the answer "
                         f"choices, and the task has no `choices`",
                         "list the answers under task.choices (or name a column of per-example "
                         "choices with task.choices_field), or use a text metric")
        return metric, metric_cls

    named = metric_entries(config, problems.errors, problems.src)
    if named:  # `metrics:`: the first is the row's value, the others are columns beside it
        (primary, metric_raw, loc), *others = named
    else:
        primary, others, loc = None, [], ("metric",)
        metric_raw = config.metric or ("choice" if task_choices else "exact_match")
        if isinstance(metric_raw, str):
            metric_raw = {"type": metric_raw}
    metric, metric_cls = check_metric(metric_raw, loc)
    extra_metrics: dict[str, Any] = {}
    for name, raw_spec, other_loc in others:
        other, other_cls = check_metric(raw_spec, other_loc)
        if other_cls is not None and other_cls.needs_probabilities:
            problems.add((*other_loc, "type"), f"metric '{name}' reads the model's probabilities; "
                         "only the first metric may", "put it first, or use a text metric")
        if other is not None:
            extra_metrics[name] = other
    return Metrics(metric_raw, loc, metric, metric_cls, primary, others, extra_metrics)


def check_model(config: ExperimentConfig, problems: Problems) -> BaseModel | None:
    """The top-level `model:` by its backend's Config class."""
    from ladder.registry import BACKENDS

    backend_cls = problems.lookup(BACKENDS, config.model.get("backend", "hf"), ("model", "backend"))
    if backend_cls is None:
        return None
    return problems.check(backend_cls.Config, {"backend": "hf", **config.model}, ("model",))


def check_stages(config: ExperimentConfig, metrics: Metrics, model: BaseModel | None,
                 problems: Problems) -> Stages:
    """Each stage by its own Config class, and what it names of the stages before it."""
    from ladder.registry import STAGES

    out = Stages()
    for i, stage_raw in enumerate(config.stages):
        if not isinstance(stage_raw, dict) or "type" not in stage_raw:
            problems.add(("stages", i), "each stage needs a `type`",
                         f"write e.g. '- type: zero_shot' (types: {', '.join(STAGES.names())})")
            continue
        stage_cls = problems.lookup(STAGES, stage_raw["type"], ("stages", i, "type"))
        if stage_cls is None:
            continue
        stage = problems.check(stage_cls.Config, stage_raw, ("stages", i))
        if stage is None:
            continue
        name = stage.name or stage.type
        problem = stage_cls.check_metric(stage, metrics.cls) if metrics.cls is not None else None
        if problem:  # e.g. best_of_n's select: majority
            problems.add(("stages", i, problem[0]), *problem[1:])
        check_stage_name(name, i, out, problems)
        check_stage_references(config, metrics, stage, stage_raw, stage_cls, name, i, out, problems)
        out.seen[name] = i
        out.classes[name] = stage_cls
        out.stages.append(stage.model_copy(update={"name": name}))
        if stage.generation:
            problems.check(GenerationConfig, {**config.generation.model_dump(), **stage.generation},
                           ("stages", i, "generation"))
        if stage.model and model is not None:
            # Checked now like the top-level model (typos, strict types), not when the stage starts.
            from ladder.registry import BACKENDS

            merged = merge_model(model.model_dump(), stage.model)
            stage_backend = problems.lookup(BACKENDS, merged.get("backend", "hf"), ("stages", i, "model", "backend"))
            if stage_backend is not None:
                problems.check(stage_backend.Config, merged, ("stages", i, "model"))
    return out


def check_stage_name(name: str, i: int, earlier: Stages, problems: Problems) -> None:
    """A stage's name: not one of ladder's own files or folders, and not an earlier stage's."""
    if name.lower() in {r.lower() for r in RESERVED_NAMES}:
        problems.add(("stages", i, "name"),
                     f"stage name '{name}' is a name ladder keeps for its own file or folder at "
                     f"the top of the results folder ({', '.join(RESERVED_NAMES)})",
                     "choose another `name:` for this stage, e.g. one without the extension")
    elif name in earlier.seen:
        problems.add(("stages", i, "name"),
                     f"stage name '{name}' is used twice (also stages.{earlier.seen[name]})",
                     "give repeated stage types distinct `name:` values")


def check_stage_references(config: ExperimentConfig, metrics: Metrics, stage: StageConfig,
                           stage_raw: dict[str, Any], stage_cls: type, name: str, i: int,
                           earlier: Stages, problems: Problems) -> None:
    """What stage i names of the stages before it (its model's `from_stage`, a scorer's), and the
    rule that no probability metric reads an RL policy."""
    from ladder.config.judged import nested_pairwise

    seen, classes, stages = earlier.seen, earlier.classes, earlier.stages
    upstream = (stage.model or {}).get("from_stage")
    problem = _from_stage_problem(upstream, stage, i, seen, classes, stages, config.stages)
    if problem:
        problems.add(("stages", i, "model", "from_stage"), *problem)
    for key in nested_pairwise(stage_raw):
        problems.add(("stages", i, *key), "pairwise judging compares a row's outputs with "
                     "another stage's outputs: it scores rows, it cannot rank or reward samples",
                     "drop `pairwise:` here; put it on the task metric (metric:)")
    for key, named in nested_from_stage(stage_raw):
        # A scorer's `from_stage:` (pm) names an earlier stage that trained a reward model.
        why = ("is not an earlier stage" if named not in seen else
               "did not train a reward model" if not classes[named].produces_reward_model
               else f"is skipped ({stages[seen[named]].skip})" if stages[seen[named]].skip else None)
        if why:
            rms = [n for n, c in classes.items() if c.produces_reward_model]
            problems.add(("stages", i, *key), f"stage '{named}' {why}",
                         f"name an earlier reward_model stage ({', '.join(rms) or 'none yet'})")
    # A stage trained on a reward (rl) makes an RL policy: its token probabilities are not calibrated.
    from_rl = upstream in seen and classes[upstream].trains_on_reward
    if metrics.reads_probabilities and (stage_cls.trains_on_reward or from_rl):
        # Refused before anything runs: the number would look meaningful and be wrong.
        problems.add(("stages", i, "type" if stage_cls.trains_on_reward else "model"),
                     *rl_probability_problem(name, metrics.raw.get("type")))


def check_across(config: ExperimentConfig, metrics: Metrics, stages: Stages, problems: Problems) -> None:
    """What the metrics name of the stages (a pairwise judge's reference, a PM's training stage), and
    the red-teaming keys (a respondent's {response}, shots_from, train_from)."""
    from ladder.config.judged import metric_from_stage_problem, pairwise_problem
    from ladder.config.redteam import redteam_problems

    for spec, spec_loc in [(metrics.config, metrics.loc), *((metrics.extra.get(n), l) for n, _, l in metrics.others)]:
        against = getattr(getattr(spec, "pairwise", None), "against", None)
        problem = pairwise_problem(against, stages.stages, stages.classes) if against is not None else None
        if problem:  # a pairwise judge's reference must be a scored stage that runs first
            problems.add((*spec_loc, "pairwise", "against"), *problem)
    # A respondent's {response}, shots_from / train_from (ladder/config/redteam.py).
    for key, *rest in redteam_problems(
            config, [(metrics.loc, metrics.raw, metrics.cls), *((l, raw, None) for _, raw, l in metrics.others)],
            stages.stages, {name: ("stages", i) for name, i in stages.seen.items()}, stages.classes):
        problems.add(key, *rest)
    for key, named in nested_from_stage(metrics.raw, ("metric",)):
        # A PM metric trained in this experiment: its reward_model stage must run before any stage it scores.
        problem = metric_from_stage_problem(named, stages.stages, stages.classes)
        if problem:
            problems.add(key, *problem)


def metric_entries(config: ExperimentConfig, errors: list[str], src: ConfigSource
                   ) -> list[tuple[str, dict[str, Any], tuple]]:
    """(name, raw spec, key path) of each entry of `metrics:` (a list, or a name → spec mapping); a
    list entry is named after its type (a python metric: its function). Empty without `metrics:`."""
    if config.metrics is None:
        return []
    if config.metric is not None:
        errors.append(src.error(("metrics",), "both `metric:` and `metrics:` are given",
                                "keep one: `metrics:` lists the first (the row's value) and the others"))
        return []
    items = list(config.metrics.items()) if isinstance(config.metrics, dict) else list(enumerate(config.metrics))
    out: list[tuple[str, dict[str, Any], tuple]] = []
    for key, spec in items:
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            errors.append(src.error(("metrics", key), "a metric is a type name or a mapping with `type:`",
                                    "write e.g. {type: judge, criteria: ..., model: {...}}"))
            continue
        name = str(key) if isinstance(config.metrics, dict) else \
            str(spec.get("function", "")).rpartition(":")[2] or str(spec.get("type"))
        if any(name == n for n, _, _ in out):  # (a name a summary.csv column has: refused by the runner)
            errors.append(src.error(("metrics", key), f"metric name '{name}' is used twice",
                                    "write `metrics:` as a mapping of distinct names, e.g. {polite: {...}, terse: {...}}"))
            continue
        out.append((name, spec, ("metrics", key)))
    if not out and not errors:
        errors.append(src.error(("metrics",), "`metrics:` lists no metric", "list at least one, or use `metric:`"))
    return out


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
    trainers = [n for n, cls in classes.items() if cls.produces_model]
    hint = f"earlier stages that train a model: {', '.join(trainers)}" if trainers else \
        "put a training stage such as sft before this one"
    if upstream not in seen:
        later = [s.get("name") or s.get("type") for s in raw_stages[i + 1:] if isinstance(s, dict)]
        where = "comes after this stage" if upstream in later else "is not a stage of this experiment"
        return f"stage '{upstream}' {where}, so it has no model to give", f"name an earlier stage ({hint})"
    source = earlier[seen[upstream]]
    if not classes[upstream].produces_model:
        return (f"stage '{upstream}' is a {source.type} stage, which evaluates a model but does not "
                f"produce one", f"name a stage that trains a model ({hint}), or drop from_stage")
    if source.skip and not stage.skip:
        # A skipped stage never runs, so even an earlier run's model is not picked up.
        return (f"stage '{upstream}' is skipped ({source.skip}), so it produces no model for this stage",
                f"remove `skip:` from stage '{upstream}', or skip this stage too")
    return None
