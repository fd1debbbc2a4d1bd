"""Judged metrics: a scorer (judge, classifier, pm, python) as the number a task is measured by.

A behaviour with no gold answer — politeness, refusals, harmlessness — is measured by an automatic
proxy. The proxies are ladder's scorers (ladder/scorers): the same object that picks best_of_n's
sample and rewards rl scores the row when the YAML names it as `metric:` — one implementation, so
a judge's verdict means the same thing in every role. This module holds what the metric role adds:

- a scorer metric built with the stage's context (`build_task_metric`); which metric types compare
  with a gold target (refused on an open-ended task) is ladder/config/judged.py's, for the config check;
- the samples' judge spend and unparsed verdicts, summed into the row (`judged_stats`), and the
  warning above UNPARSED_WARN;
- whether a row was picked or trained by the very scorer that scores it (`selected_by_metric`): its
  number is then optimistic, since the judge's own noise was selected for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pydantic import BaseModel

from ladder.config.judged import JUDGED, compares_with_target, is_scorer_type, open_ended_problem  # noqa: F401
from ladder.errors import LadderError
from ladder.guards import UNPARSED_WARN
from ladder.types import Guard, Record

if TYPE_CHECKING:
    from ladder.metrics import Metric
    from ladder.scorers.context import ScoringContext

def build_task_metric(config: BaseModel, ctx: ScoringContext, field: str = "metric") -> Metric:
    """The task metric of a stage: plain metrics need nothing but their config; a scorer (a judge's
    backend, a classifier's weights) is built with the stage's context, like best_of_n's `scorer:`."""
    from ladder.metrics import build_metric
    from ladder.scorers import build_scorer

    if not is_scorer_type(config.type):
        return build_metric(config)
    if getattr(config, "pairwise", None) is not None:  # a judge comparing two stages' outputs
        from ladder.metrics.pairwise import PairwiseJudge

        try:
            return PairwiseJudge(config, ctx)
        except LadderError as exc:  # re-rooted under the key the user wrote, as build_scorer does
            sub = exc.field.removeprefix("metric.") if exc.field else None
            raise type(exc)(exc.message, where=exc.where, field=f"{field}.{sub}" if sub else field,
                            fix=exc.fix) from None
    return build_scorer(config, ctx, field=field)


def spec_config(spec: Any, metric: BaseModel) -> BaseModel | None:
    """A scorer spec as its validated config, `metric` standing in for `scorer: metric`."""
    from ladder.scorers import parse_scorer

    if spec is None:
        return None
    config = parse_scorer(spec)
    return metric if config.type == "metric" else config


def same_scorer(spec: Any, metric: BaseModel) -> bool:
    """Whether a best_of_n scorer / rl reward spec is the scorer `metric` is (the same config)."""
    config = spec_config(spec, metric)
    return config is not None and config.model_dump(mode="json") == metric.model_dump(mode="json")


def selected_by_metric(stage: BaseModel, metric: BaseModel) -> bool:
    """Whether the stage picks (best_of_n's scorer) or trains on (rl's reward) the very scorer that
    scores its row, on a metric that needs no gold answer (one that does makes the row an oracle,
    its own mark). Such a row is optimistic: it selected for the judge's own noise."""
    from ladder.registry import STAGES

    spec = STAGES.get(stage.type).selects_by(stage)
    return spec is not None and not compares_with_target(metric) and same_scorer(spec, metric)


def judged_stats(records: Sequence[Record]) -> dict[str, Any]:
    """What the metric's own model calls added to these records' samples: USD, tokens, and the share
    of verdicts that did not parse (`unparsed`). Empty for a metric that calls no model."""
    rows = [row for rec in records for row in rec.samples if "score" in row]
    metas = [row["score_meta"] for row in rows if "score_meta" in row]
    # The further metrics' (`metrics:`) calls are spend of the row too.
    spend = metas + [m for row in rows for m in (row.get("metrics_meta") or {}).values()]
    if not spend:
        return {}
    out: dict[str, Any] = {
        "metric_cost_usd": sum(m.get("cost_usd", 0.0) for m in spend),
        "metric_prompt_tokens": sum(m.get("prompt_tokens", 0) for m in spend),
        "metric_completion_tokens": sum(m.get("completion_tokens", 0) for m in spend),
    }
    parsed = [m["parsed"] for m in metas if "parsed" in m]
    if parsed:
        out["unparsed"] = parsed.count(False) / len(parsed)
        out["unparsed_count"] = parsed.count(False)
    from ladder.metrics.pairwise import pairwise_stats

    out.update(pairwise_stats(metas))  # a pairwise judge: its orders' disagreement, the reference row
    return out


def judged_guards(stats: Mapping[str, Any], name: str) -> list[Guard]:
    """The unparsed-verdict warning: a judge that rambles is a broken metric, not noise."""
    from ladder.metrics.pairwise import pairwise_guards

    share = stats.get("unparsed")
    if share is None or share <= UNPARSED_WARN:
        return pairwise_guards(stats, name)
    return [*pairwise_guards(stats, name), Guard("unparsed", "warn", f"{stats['unparsed_count']} of the {name} metric's verdicts ({share:.0%}) "
                  f"could not be parsed and scored its failure_score: read score_meta.verdict in samples.jsonl, "
                  f"then make the judge's instruction stricter or give it more generation.max_tokens", share)]


def check_open_ended(exp: Any, task: Any) -> None:
    """At prepare, once the data is read (before anything is written): an open-ended task found
    there (no `task.target` and no `target` column) refuses a metric that compares with targets."""
    from ladder.errors import ConfigError

    if not getattr(task, "open_ended", False):
        return
    why = ("task.target is null" if exp.config.task.target is None else
           f"task.target is not set and its data has no '{exp.config.task.target}' column")
    problem = open_ended_problem(exp.metric, why)
    if problem:
        raise ConfigError(problem[0], where=str(exp.source) if exp.source else None, field="metric",
                          fix=problem[1])


def add_estimates(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two scorer estimates of one stage (`ladder check`) as one: a best_of_n judge and the metric's."""
    if a is None or b is None:
        return a or b
    out = {**a, "scorer": f"{a['scorer']} + {b['scorer']}"}
    for key in ("calls", "prompt_tokens", "max_output_tokens", "cost_usd", "cost_usd_standard", "cost_usd_batch"):
        if key in a or key in b:
            out[key] = (a.get(key) or 0) + (b.get(key) or 0)
    return out
