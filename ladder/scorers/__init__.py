"""Scorers: rank completions for best_of_n, and reward them in rl.

A scorer *is* a Metric — `score(example, completion) -> Score`, plus `score_batch` for many at
once — so the task metric, any other metric type and the model-based scorers here are
interchangeable. The model-based ones need the stage's context (the task, to put the prompt in
front of the completion; the backend pool and cache, for a judge), so every scorer is made with
`build_scorer(spec, ctx)`.

In a stage's YAML (`scorer:` of best_of_n; the rl stage's reward takes the same spec):

    scorer: metric                     the task metric itself: it reads the gold target, an oracle
    scorer: {type: classifier, model: path/or/hub-id, label: positive}
    scorer: {type: judge, criteria: "...", scale: yes_no, model: {backend: openai, name: ...}}
    scorer: {type: pm, model: path/or/hub-id, reference: "I'm sorry, I can't help with that."}
    scorer: {type: python, function: mypkg.rewards:fn}   (or any metric type: regex, includes, ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Sequence

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

from ladder.config import Section, template_fields
from ladder.errors import ConfigError, LadderError
from ladder.metrics import Metric
from ladder.registry import METRICS, SCORERS, Registry  # noqa: F401 (SCORERS: re-exported)
from ladder.types import Example, Score

if TYPE_CHECKING:
    from ladder.backends.base import CallStats
    from ladder.stages import StageContext



def _parses(template: str) -> str:
    template_fields(template)  # a ValueError naming the problem, at YAML load time
    return template


Template = Annotated[str, AfterValidator(_parses)]
"""A scorer input template: {completion}, {prompt}, {target} and the task's data columns."""


class MetricScorerConfig(Section):
    type: Literal["metric"] = "metric"
    """The experiment's task metric. It reads the gold target, so as a selector it is an oracle:
    the best-of-N number it gives is an upper bound, not something deployable."""


class Scorer(Metric):
    """Base of the scorers that run a model: they implement `score_batch`; `score` is one item."""

    batched = True
    calls: CallStats | None = None
    """The scorer's own model calls (a judge's: generated, cached, errors), reported in best_of_n's
    extra.scorer_calls; None for a scorer that makes none (a local classifier or PM)."""

    def __init__(self, config: BaseModel, ctx: StageContext):
        super().__init__(config)
        self.task = ctx.task

    @classmethod
    def reads_targets(cls, config: BaseModel) -> bool:
        """A model-based scorer sees the gold target only where one of its templates names {target}."""
        return any("target" in template_fields(v) for k, v in config if k.endswith("template") and isinstance(v, str))

    @classmethod
    def estimate(cls, config: BaseModel, ctx: StageContext, examples: Sequence[Example], calls: int,
                 completion_tokens: int) -> dict[str, Any] | None:
        """For `ladder check`: what `calls` calls over these examples cost at most ({scorer, calls,
        prompt_tokens, max_output_tokens, cost_usd}); None (the default): a local model, which
        calls but bills nothing."""
        return None

    def score(self, ex: Example, completion: str) -> Score:
        return self.score_batch([ex], [completion])[0]

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        raise NotImplementedError

    def prompt_text(self, ex: Example) -> str:
        """The task prompt as plain text (instruction, then the user turn): a template's {prompt}."""
        return "\n\n".join(m.content for m in self.task.render(ex))

    def fill(self, template: str, ex: Example, completion: str, **extra: str) -> str:
        """A template with {completion}, {prompt}, {target} and the example's data columns filled."""
        return template.format_map({**ex.fields, "target": ex.target, "prompt": self.prompt_text(ex),
                                    "completion": completion, **extra})


def check_template(template: str, ctx: StageContext, field: str, extra: Sequence[str] = ()) -> None:
    """Fail before any generation when a scorer template names a field no example has."""
    # {response}: a respondent's reply (ladder/metrics/redteam.py), with a second model in the loop.
    respond = ("response",) if ctx.experiment.stage_respondent(ctx.stage) is not None else ()
    known = {"prompt", "completion", "target", *extra, *respond, *(ctx.examples[0].fields if ctx.examples else ())}
    unknown = [name for name in template_fields(template) if name not in known]
    if unknown:
        raise ConfigError(f"the template names {{{unknown[0]}}}, which is not a field here", field=field,
                          fix=f"use some of: {', '.join('{' + k + '}' for k in sorted(known))}")


def scorer_class(name: str) -> type[Metric]:
    """The class behind a scorer type: a scorer here, a plugin, or any metric type."""
    if ":" in name or name in SCORERS.names():
        return SCORERS.get(name)
    if name in METRICS.names():
        return METRICS.get(name)
    raise ConfigError(f"unknown scorer type '{name}'",
                      fix=f"use metric, {', '.join(SCORERS.names())}, a metric type "
                          f"({', '.join(METRICS.names())}) or a 'module:attr' import path")


def parse_scorer(value: Any) -> BaseModel:
    """A scorer spec (a type name or a mapping) → its validated config. Used as a pydantic
    validator, so a bad spec fails when the YAML is loaded, with the nested key named."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError("a scorer is a type name (e.g. metric) or a mapping with a `type:` key")
    if value["type"] == "metric":
        config_cls: type[BaseModel] = MetricScorerConfig
    else:
        try:
            config_cls = scorer_class(value["type"]).Config
        except ConfigError as exc:
            raise ValueError(f"{exc.message}; {exc.fix}") from None
    try:
        return config_cls.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"{value['type']} scorer: " + "; ".join(_say(e) for e in exc.errors())) from None


def _say(err: Any) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if err["type"] == "missing":
        return f"required key '{key}' is missing"
    return f"{key}: {err['msg'].removeprefix('Value error, ')}"


ScorerSpec = Annotated[Any, BeforeValidator(parse_scorer)]
"""Type of a config field holding a scorer: `scorer: ScorerSpec = Field("metric", validate_default=True)`."""


def reads_targets(spec: Any) -> bool:
    """Whether the scorer a (valid) spec names reads the gold target: the task metric and other
    metric types do, a model-based scorer only when its template names {target}. As the selector
    or reward on the test examples, such a scorer makes the row an oracle (an upper bound)."""
    config = parse_scorer(spec)
    return True if config.type == "metric" else scorer_class(config.type).reads_targets(config)


def build_scorer(spec: Any, ctx: StageContext, field: str = "scorer") -> Metric:
    """The scorer a spec names, ready to score; `field` (e.g. 'stages.best_of_n.scorer') is where
    errors point. Loads models now, so a wrong path fails before anything is generated."""
    try:
        config = parse_scorer(spec)
    except ValueError as exc:
        raise ConfigError(str(exc), field=field) from None
    if config.type == "metric":
        if ctx.metric.needs_probabilities:
            raise ConfigError(f"the task metric '{ctx.metric.name}' reads the model's probabilities of the "
                              f"answers, not a completion, so it cannot rank or reward samples", field=field,
                              fix="name a scorer that reads completions: choice, exact_match, pm, judge, ...")
        return ctx.metric
    cls = scorer_class(config.type)
    if cls.needs_probabilities:
        raise ConfigError(f"'{config.type}' reads the model's probabilities of the answers, not a completion, "
                          f"so it cannot rank or reward samples", field=field,
                          fix="name a scorer that reads completions: choice, exact_match, pm, judge, ...")
    try:
        scorer = cls(config, ctx) if issubclass(cls, Scorer) else cls(config)
    except LadderError as exc:
        # Scorers name fields relative to their own section (metric classes say 'metric.x'):
        # re-root them under the key the user actually wrote.
        sub = exc.field.removeprefix("metric.") if exc.field else None
        raise type(exc)(exc.message, where=exc.where, field=f"{field}.{sub}" if sub else field,
                        fix=exc.fix) from None
    # With a respondent (ladder/metrics/redteam.py) the task metric answers `also_responding`: the
    # scorer then scores the respondent's reply, as the metric does.
    also = getattr(ctx.metric, "also_responding", None)
    return also(scorer) if also is not None else scorer


def estimate_scorer(spec: Any, ctx: StageContext, examples: Sequence[Example], calls: int,
                    completion_tokens: int) -> dict[str, Any] | None:
    """For `ladder check`: what `calls` scorer calls over these examples cost at most — tokens and
    USD for a scorer that calls a priced model (a judge), zero for local models and metrics; None
    for the task metric (no model call). `completion_tokens`: the longest completion it reads."""
    config = parse_scorer(spec)
    if config.type == "metric":
        return None
    cls = scorer_class(config.type)
    # A metric type as scorer is plain code; a Scorer declares `estimate` (None: a local model).
    got = cls.estimate(config, ctx, examples, calls, completion_tokens) if issubclass(cls, Scorer) else None
    if got is None:  # a local model or plain code: calls, but nothing billed
        return {"scorer": config.type, "calls": calls, "prompt_tokens": 0, "max_output_tokens": 0, "cost_usd": 0.0}
    return got
