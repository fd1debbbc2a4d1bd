"""The config checks of red-teaming's pieces (ladder/metrics/redteam.py, ladder/earlier.py).

- `{response}` (the respondent's reply) in a metric's or a stage scorer's template, on a stage
  that has no respondent: there is no reply to fill in.
- A respondent with a metric that reads the model's probabilities (there is no text to score), or
  with a pairwise judge (it compares the stages' own outputs, not replies).
- few_shot's `shots_from:` / sft's `train_from:` naming a stage that does not exist, does not
  answer the test examples, is skipped, or does not run earlier.

Called once from validate() with the validated sections; returns (key path, message, fix) each.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ladder.config.schema import template_fields


def _templates(raw: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, template) of every `template:` string inside a metric or scorer spec."""
    out: list[tuple[tuple, str]] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k == "template" and isinstance(v, str):
                out.append(((*path, k), v))
            elif k != "respondent":
                out += _templates(v, (*path, k))
    elif isinstance(raw, list):
        for j, v in enumerate(raw):
            out += _templates(v, (*path, j))
    return out


def _names_response(template: str) -> bool:
    try:
        return "response" in template_fields(template)
    except ValueError:  # a broken template is reported by its own check
        return False


def redteam_problems(config: Any, metrics: Sequence[tuple[tuple, Any, Any]], stages: Sequence[Any],
                     stage_locs: Mapping[str, tuple], classes: Mapping[str, type]) -> list[tuple[tuple, str, str]]:
    """`metrics`: (key path, raw spec, class) of the task metric and each `metrics:` column;
    `stages`: the validated stages (named), `stage_locs` their key paths, `classes` their classes."""
    out: list[tuple[tuple, str, str]] = []
    scored = [s for s in stages if not s.skip and classes[s.name].evaluates_test_subsample
              and not classes[s.name].produces_reward_model]
    bare = [s.name for s in scored if (s.respondent or config.respondent) is None]
    fix = ("add a respondent: respondent: {model: {...}} (the model that replies to each completion), or "
           "use {completion} for the rung model's own output")
    for loc, raw, cls in metrics:
        for key, template in _templates(raw):
            if bare and _names_response(template):
                out.append(((*loc, *key), f"the template names {{response}}, the respondent's reply, and stage "
                            f"'{bare[0]}' has no respondent", fix))
        responding = bool(config.respondent or any(s.respondent for s in stages))
        if responding and isinstance(raw, dict) and raw.get("pairwise") is not None:
            out.append(((*loc, "pairwise"), "pairwise judging compares two stages' own outputs, and with a respondent "
                        "the metric scores the respondent's replies: the two do not combine yet",
                        "judge the replies one at a time (drop `pairwise:`), or drop `respondent:`"))
        if cls is not None and cls.needs_probabilities and responding:
            out.append(((*loc, "type"), f"metric '{raw.get('type')}' reads the model's probabilities of the answers, "
                        f"and with a respondent the metric scores the respondent's reply, a text",
                        "use a text metric (a judge, classifier, python, ...), or drop `respondent:`"))
    for stage in stages:
        if (stage.respondent or config.respondent) is None:
            for key, template in _templates(stage.model_dump(mode="json", exclude={"respondent"})):
                if _names_response(template):
                    out.append(((*stage_locs[stage.name], *key), f"the template names {{response}}, the "
                                f"respondent's reply, and stage '{stage.name}' has no respondent", fix))
    by_name = {s.name: i for i, s in enumerate(stages)}
    for i, stage in enumerate(stages):
        for key in ("shots_from", "train_from"):
            spec = getattr(stage, key, None)
            if spec is None:
                continue
            problem = _earlier_problem(spec.stage, stage.name, i, stages, by_name, classes)
            if problem:
                out.append(((*stage_locs[stage.name], key, "stage"), *problem))
    return out


def _earlier_problem(named: str, stage: str, i: int, stages: Sequence[Any], by_name: Mapping[str, int],
                     classes: Mapping[str, type]) -> tuple[str, str] | None:
    earlier = [s.name for s in stages[:i] if not s.skip and classes[s.name].evaluates_test_subsample
               and not classes[s.name].produces_reward_model]
    fix = f"name an earlier stage that answers the test examples ({', '.join(earlier) or 'none yet: add one above'})"
    if named not in by_name:
        return f"stage '{named}' is not a stage of this experiment", fix
    if by_name[named] >= i:
        return (f"stage '{named}' comes {'later' if by_name[named] > i else 'at the same place'}: "
                f"stage '{stage}' needs its outputs before it runs", fix + f", or move '{named}' above '{stage}'")
    ref = stages[by_name[named]]
    if ref.skip:
        return f"stage '{named}' is skipped ({ref.skip})", fix
    if not classes[named].evaluates_test_subsample or classes[named].produces_reward_model:
        return f"stage '{named}' (a {ref.type} stage) has no outputs on the test examples", fix
    return None
