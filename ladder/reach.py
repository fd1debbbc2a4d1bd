"""Every model a run will call, beyond the stages' own: a best_of_n `scorer:`, an rl `reward:` or
the task metric (`metric:`, `metrics:`) that is a judge calls its own model, often on another
server with another key. Each is checked
like a stage model (key, SDK, one free request) before the results folder is touched, and a
failure names the config field the model comes from (`stages.<name>.scorer.model.base_url`), not
the experiment's `model.base_url`, which may be fine."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ladder.errors import LadderError, MissingKey

if TYPE_CHECKING:
    from ladder.config import Experiment, StageConfig

SCORER_FIELDS = ("scorer", "reward")
"""Stage fields that hold a scorer spec (best_of_n's scorer, rl's reward)."""


def scorer_models(exp: Experiment, stage: StageConfig) -> list[tuple[str, Any]]:
    """(field prefix, backend config) of each judge model (and the respondent) the stage calls, e.g.
    ("stages.best_of_n.scorer.", {backend: openai, ...}) or ("metric.", ...) for a judge that is
    the task metric; a judge on a model an earlier stage trains is left out (it does not exist yet)."""
    from ladder.registry import STAGES
    from ladder.scorers import parse_scorer

    specs = [(f"stages.{stage.name}.{name}.", parse_scorer(getattr(stage, name)))
             for name in SCORER_FIELDS if getattr(stage, name, None) is not None]
    if not STAGES.get(stage.type).produces_reward_model:  # a judge as the task metric scores every other stage
        specs += [("metric.", exp.metric),
                  *((f"metrics.{name}.", spec) for name, spec in exp.extra_metrics.items())]
    out = []
    for prefix, config in specs:
        if getattr(config, "type", None) != "judge":
            continue
        # Resolved as JudgeScorer resolves it: overrides of the experiment's model.
        model = exp.stage_model(stage.model_copy(update={"model": config.model}))
        if getattr(model, "from_stage", None) is None:
            out.append((prefix, model))
    from ladder.metrics.redteam import respondent_models

    return out + respondent_models(exp, stage)  # a second model in the loop (red-teaming's target)


_MODEL_FIELD = re.compile(r"(?<![\w.])model\.(?=[a-z_])")


def named(exc: LadderError, prefix: str) -> LadderError:
    """`exc` (raised by a backend, which names its fields `model.…`) with those fields named where
    this model is configured: `prefix` + `model.base_url`."""
    if not prefix:
        return exc
    field = exc.field
    if field == "model" or (field or "").startswith("model."):
        field = prefix + field
    fix = _MODEL_FIELD.sub(prefix + "model.", exc.fix) if exc.fix else exc.fix
    message = _MODEL_FIELD.sub(prefix + "model.", exc.message)
    out = type(exc)(message, where=exc.where, field=field, fix=fix)
    out.__dict__.update({k: v for k, v in exc.__dict__.items()  # what a subclass adds (MissingKey's env)
                         if k not in ("message", "where", "field", "fix")})
    return out


def check(prefix: str, fn: Any, *args: Any) -> Any:
    """fn(*args), with a LadderError it raises renamed by `named`."""
    try:
        return fn(*args)
    except LadderError as exc:
        raise named(exc, prefix) from None


def reachability(exp: Experiment) -> tuple[list[dict[str, Any]], LadderError | None]:
    """`ladder check`'s live look: the free probe request of every remote model the experiment
    calls (stage models and judges), each server once. Returns one row per model ({model, url,
    field, status: reachable | unreachable | not probed, message}) and the first failure's error."""
    from ladder.backends.base import Backend, BackendPool

    rows: list[dict[str, Any]] = []
    first: LadderError | None = None
    seen: set[int] = set()
    pool = BackendPool()
    try:
        for stage in exp.stages:
            if stage.skip:
                continue
            model = exp.stage_model(stage)
            own = [("", model)] if getattr(model, "from_stage", None) is None else []
            for prefix, config in [*own, *scorer_models(exp, stage)]:
                backend = pool.get(config)
                if id(backend) in seen or type(backend).probe is Backend.probe:  # local: nothing to reach
                    continue
                seen.add(id(backend))
                row = {"model": config.name, "url": getattr(config, "base_url", None) or f"the {config.backend} API",
                       "field": prefix + "model", "status": "reachable", "message": ""}
                try:
                    check(prefix, backend.probe)
                except LadderError as exc:
                    if isinstance(exc, MissingKey):  # no key here: the probe cannot be sent (missing_key says so)
                        row.update(status="not probed", message=f"{exc.env} is not set")
                    else:
                        row.update(status="unreachable", message=exc.render())
                        first = first or exc
                rows.append(row)
    finally:
        pool.close()
    return rows, first
