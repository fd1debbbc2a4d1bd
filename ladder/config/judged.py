"""What the config check needs to know about judged metrics (ladder/metrics/judged.py has the rest).

Which metric types are scorers that run a model (judge, classifier, pm), which compare with a gold
target (refused on an open-ended task: no `task.target`), and the checks of a judged metric's spec.
Imports nothing of ladder's but the registry and the errors at module level, so the config
validator can use it without an import circle.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pydantic import BaseModel


JUDGED = ("judge", "classifier", "pm", "python")
"""The metric types that need no gold answer (named in the fix when a task has none)."""


def is_scorer_type(name: Any) -> bool:
    """A metric type served by a model-based scorer (judge, classifier, pm, a 'module:attr' one)."""
    from ladder.registry import SCORERS

    return isinstance(name, str) and (name in SCORERS.names() or ":" in name)


def metric_class(name: str) -> type:
    """The class behind a task metric type: a metric, or a scorer (ladder.scorers)."""
    from ladder.registry import METRICS, SCORERS

    return SCORERS.get(name, field="metric.type") if is_scorer_type(name) else METRICS.get(name, field="metric.type")


def compares_with_target(config: BaseModel) -> bool:
    """Whether this metric compares completions with a gold target: every metric type but python
    (the user's function decides), and a scorer whose template names {target}."""
    if config.type == "python":
        return False
    return metric_class(config.type).reads_targets(config)


def open_ended_problem(metric: BaseModel, why: str) -> tuple[str, str] | None:
    """(message, fix) when a metric that compares with a gold target scores an open-ended task."""
    if not compares_with_target(metric):
        return None
    return (f"the task is open-ended ({why}), and metric '{metric.type}' compares each completion with "
            f"a gold target, which no example has",
            f"score a behaviour instead: metric: {{type: judge, criteria: \"...\", model: {{...}}}}, or "
            f"{', '.join(JUDGED[1:])} (the same specs best_of_n's `scorer:` takes); or name the gold "
            f"column with task.target")


def judged_metric_problems(metric: BaseModel | None, config: Any) -> list[tuple[tuple, str, str]]:
    """(key path, message, fix) of what is wrong with a valid metric config on this experiment, for
    the config check: a target metric on a task with `target: null`, a judge with no model."""
    if metric is None:
        return []
    out = []
    if config.task.target is None and not config.task.custom:
        problem = open_ended_problem(metric, "task.target is null")
        if problem:
            out.append((("type",), *problem))
    if metric.type == "judge" and metric.model is None:
        # As a selector a judge may default to the stage's model; as the metric it must not: the row's
        # number would change with every stage's model (and rl trains that very model to please it).
        out.append((("model",), "a judge as the task metric needs its own model: the judge must be "
                    "the same for every stage, whatever model a stage evaluates",
                    "name it, e.g. {type: judge, ..., model: {backend: openai, name: gpt-4o-mini}} "
                    "(model: {backend: hf, name: ladder-tiny} for an offline judge)"))
    return out


def metric_from_stage_problem(named: str, stages: Sequence[Any], classes: Mapping[str, type]
                              ) -> tuple[str, str] | None:
    """(message, fix) when the metric's `from_stage:` (a PM trained in this experiment) cannot score
    the rows: no such reward_model stage, or a stage the metric scores runs before it."""
    rms = [n for n, c in classes.items() if c.produces_reward_model]
    by_name = {s.name: i for i, s in enumerate(stages)}
    if named not in by_name or not classes[named].produces_reward_model:
        why = "is not a stage of this experiment" if named not in by_name else "did not train a reward model"
        return (f"the metric's PM comes from stage '{named}', which {why}",
                f"name a reward_model stage ({', '.join(rms) or 'add one as the first stage'}), or give the "
                f"PM's folder as metric.model")
    before = [s.name for s in stages[:by_name[named]] if not s.skip and not classes[s.name].produces_reward_model]
    if before:
        return (f"the metric's PM is trained by stage '{named}', which runs after {', '.join(before)}: "
                f"those stages would have no metric to be scored by",
                f"move stage '{named}' to the top of `stages:`")
    return None


def pairwise_problem(against: str, stages: Sequence[Any], classes: Mapping[str, type]
                     ) -> tuple[str, str] | None:
    """(message, fix) when a pairwise judge's `against:` cannot be the reference of the rows it
    scores: no such stage, a stage that does not score the test examples or is skipped, or a scored
    stage running before it (that row would have nothing to be compared with yet)."""
    by_name = {s.name: i for i, s in enumerate(stages)}
    scored = [s.name for s in stages if classes[s.name].evaluates_test_subsample]
    if against not in by_name:
        return (f"the pairwise judge compares each row with stage '{against}', which is not a stage of this "
                f"experiment", f"name one of its stages in pairwise.against ({', '.join(scored) or 'none'}); "
                f"usually the first, e.g. zero_shot")
    ref = stages[by_name[against]]
    if not classes[against].evaluates_test_subsample:
        return (f"the pairwise judge compares each row with stage '{against}', a {ref.type} stage, which "
                f"scores no test examples", f"name a stage that answers the test examples ({', '.join(scored)})")
    if ref.skip:
        return (f"the pairwise judge compares each row with stage '{against}', which is skipped ({ref.skip})",
                f"remove `skip:` from stage '{against}', or compare with another stage ({', '.join(scored)})")
    before = [s.name for s in stages[:by_name[against]] if not s.skip and classes[s.name].evaluates_test_subsample]
    if before:
        return (f"the pairwise judge compares each row with stage '{against}', which comes later than "
                f"{', '.join(before)}: those rows would have no output of '{against}' to be compared with",
                f"compare with the first stage ({before[0]}), or move stage '{against}' above them")
    return None


def nested_pairwise(raw: Any, path: tuple = ()) -> list[tuple]:
    """Key paths of every `pairwise:` inside a stage's config (a best_of_n scorer, an rl reward):
    pairwise judging scores rows, it cannot rank or reward samples."""
    out: list[tuple] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k == "pairwise" and path:
                out.append((*path, k))
            else:
                out += nested_pairwise(v, (*path, k))
    elif isinstance(raw, list):
        for j, v in enumerate(raw):
            out += nested_pairwise(v, (*path, j))
    return out
