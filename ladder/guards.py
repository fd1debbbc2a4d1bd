"""The guardrails: each a named check that returns a Guard with a message saying what to do."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, Sequence, TypeVar

from ladder.config import GuardsConfig
from ladder.types import Example, Guard, MetricValue, Record, Sample

T = TypeVar("T")


def seeded_draw(items: Sequence[T], n: int | str, seed: int) -> list[T]:
    """`n` of `items` drawn at random with `seed`, kept in data order; all of them when n is "all"
    or no fewer than there are. The same seed draws the same items on every run: the test
    subsample, a training stage's train_subsample and sft's curve examples are all drawn so."""
    if n == "all" or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def subsample(items: Sequence[T], n: int | str, seed: int, guards: GuardsConfig) -> tuple[list[T], list[Guard]]:
    """A seeded random subsample (kept in data order), plus size warnings.

    Every stage of an experiment evaluates exactly these items, so stages compare pairwise."""
    total = len(items)
    chosen = seeded_draw(items, n, seed)
    k = len(chosen)
    flags = []
    if k > guards.max_n:
        flags.append(Guard("subsample", "warn",
                           f"evaluating {k} examples: more than you need for a clean signal "
                           f"(300-1,000 is enough) and it costs more; set subsample.n", float(k)))
    elif k < guards.min_n:
        why = f" (the test split has only {total})" if total < guards.min_n else ""
        flags.append(Guard("subsample", "warn",
                           f"evaluating {k} examples{why}: too few for clean trends; "
                           f"aim for at least {guards.min_n}", float(k)))
    else:
        flags.append(Guard("subsample", "ok", f"{k} of {total} test examples (seed {seed})", float(k)))
    return chosen, flags


def empty_fields(examples: Sequence[Any], template: str) -> list[Guard]:
    """A warning per template field that is an empty string in some test examples: those prompts
    are sent with nothing where the question should be (a missing value is an error at load; an
    empty one may be meant, so it is counted, not refused)."""
    from ladder.templates import fields

    try:
        names = [n for n in fields(template) if n != "choices"]
    except ValueError:  # a malformed template is the config check's to report
        return []
    out = []
    for name in names:
        empty = sum(1 for ex in examples if isinstance(ex.fields.get(name), str) and not ex.fields[name].strip())
        if empty:
            out.append(Guard("empty_field", "warn", f"{empty} of the {len(examples)} test examples have an empty "
                             f"'{name}', which the template fills in: their prompts are sent without it; fill in "
                             f"or drop those rows", float(empty)))
    return out


def stop_hit_rate(samples: Sequence[Sample]) -> float:
    """Share of samples that ended on a stop sequence or EOS rather than running into max_tokens."""
    done = [s for s in samples if s.finish_reason not in ("error", "scored")]  # scored: no text generated
    if not done:
        return float("nan")
    return sum(s.finish_reason in ("stop", "eos") for s in done) / len(done)


def pct_apart(x: float, ref: float) -> tuple[str, str]:
    """x and ref as percentages with just enough decimals that they read differently when they
    differ (0.897 against 0.9: '89.7%' and '90.0%', not '90%' and '90%')."""
    for digits in range(4):
        a, b = f"{x:.{digits}%}", f"{ref:.{digits}%}"
        if a != b or x == ref:
            return a, b
    return a, b


def stop_guard(samples: Sequence[Sample], stops: Sequence[str], threshold: float) -> Guard:
    rate = stop_hit_rate(samples)
    if math.isnan(rate):  # every request failed ("nan%" was printed); the errors guard flags that
        return Guard("stop_hit", "ok", "no sample finished (every request failed), so no stop rate", None)
    if stops and rate < threshold:
        shown, limit = pct_apart(rate, threshold)
        return Guard("stop_hit", "warn",
                     f"only {shown} of samples ended on a stop sequence or EOS (threshold "
                     f"{limit}); the rest ran to max_tokens — tokens nobody reads. Check the "
                     f"stop strings {list(stops)!r} match what the model writes, or lower max_tokens", rate)
    if not stops and rate < threshold:
        return Guard("stop_hit", "info",
                     f"{rate:.0%} of samples ended before max_tokens; the rest were cut off", rate)
    return Guard("stop_hit", "ok", f"{rate:.0%} of samples ended on a stop or EOS", rate)


UNPARSED_WARN = 0.05
"""Above this share of answers that are none of the choices, a K-way row is flagged."""


def choice_baselines(records: Sequence[Record], examples: Sequence[Example],
                     metric: MetricValue, sampling: bool = False) -> tuple[dict[str, float], list[Guard]]:
    """What a K-way number must be read against, over the examples it scored: chance (mean 1/K_i,
    each example's own K), the majority class's share of their targets, and the share of graded
    answers that are none of the example's choices (best_of_n: the selected one; else every sample).
    Guards: `below_chance` when the CI is wholly under chance (diagnosed: wrong answers, or answers
    that were not read — then the accuracy among parsed answers says which), `no_better_than_majority`
    when the CI does not clear the majority class's share or one answer was given to every example,
    `unparsed` above UNPARSED_WARN. `sampling`: the stage samples at temperature > 0, where the fix
    for unread answers is the sampling, not max_tokens."""
    by_id = {ex.id: ex for ex in examples}
    scored = [(rec, by_id[rec.id]) for rec in records if rec.id in by_id and by_id[rec.id].choices]
    if not scored:
        return {}, []
    graded_rows: list[tuple[Any, bool, float]] = []  # per graded answer: (answer, one of the choices?, score)
    for rec, ex in scored:
        rows = rec.samples
        graded = [rows[rec.selected]] if rec.selected is not None else [r for r in rows if "score" in r]
        graded_rows += [(r.get("extracted"), r.get("extracted") in ex.choices, float(r.get("score") or 0.0))
                        for r in graded]
    answers = [ok for _, ok, _ in graded_rows]
    chance = sum(1 / len(ex.choices) for _, ex in scored) / len(scored)
    majority = Counter(ex.target for _, ex in scored).most_common(1)[0][1] / len(scored)
    unparsed = answers.count(False) / len(answers) if answers else 0.0
    stats = {"chance": chance, "majority": majority, "unparsed": unparsed}
    parsed = [score for _, ok, score in graded_rows if ok]
    fix = ("lower the temperature (or top_p) or ask for a stricter answer format (\"answer with exactly one of "
           "...\") — this stage samples, and sampled answers wander off the format" if sampling else
           "tighten the instruction (\"answer with exactly one of ...\"), lower max_tokens or add a stop sequence")
    guards = []
    below = not math.isnan(metric.ci_high) and metric.ci_high < chance
    if below:
        guards.append(below_chance_guard(metric, chance, majority, unparsed, parsed, len(answers), fix))
    distinct = {a for a, ok, _ in graded_rows if ok}  # unparsed answers aside: one label everywhere else is collapse too
    constant = len(parsed) > 1 and len(distinct) == 1
    if constant or (not below and not math.isnan(metric.ci_high) and metric.ci_high <= majority):
        rest = f"; the other {len(answers) - len(parsed)} are unparsed" if len(parsed) < len(answers) else ""
        why = (f"every answer is {next(iter(distinct))!r} ({len(parsed)} of {len(answers)}{rest}), so "
               f"{metric.value:.3f} is at most that answer's share of the targets (the majority class is "
               f"{majority:.3f}): the model does not tell the examples apart" if constant else
               f"{metric.value:.3f} [{metric.ci_low:.3f}, {metric.ci_high:.3f}] does not clear the majority "
               f"class's share {majority:.3f}: always answering the commonest label does as well")
        guards.append(Guard("no_better_than_majority", "warn", f"{why} — read the answers in samples.jsonl "
                            f"and compare rungs against {majority:.3f}, not chance ({chance:.3f})", majority))
    if unparsed > UNPARSED_WARN:
        guards.append(Guard("unparsed", "warn", f"{answers.count(False)} of {len(answers)} answers "
                            f"({unparsed:.0%}) are none of the choices and score 0: {fix}; read them in "
                            f"samples.jsonl (extracted: null)", unparsed))
    return stats, guards


def below_chance_guard(metric: MetricValue, chance: float, majority: float, unparsed: float,
                       parsed: Sequence[float], graded: int, fix: str) -> Guard:
    """Why a K-way score sits under chance, from the numbers: answers that were read but wrong (a
    label mapping or prompt problem), or answers that were not read at all (unparsed ones score 0).
    The accuracy among parsed answers decides: unless its own CI is wholly under chance, the
    unparsed share explains the score (0.47 among parsed answers at chance 0.5 is not "wrong")."""
    from ladder.stats import mean_ci

    head = (f"{metric.value:.3f} [{metric.ci_low:.3f}, {metric.ci_high:.3f}] is below chance ({chance:.3f}, "
            f"1/K per example; the majority class is {majority:.3f})")
    acc = mean_ci(parsed)
    if unparsed > UNPARSED_WARN and (not parsed or math.isnan(acc.ci_high) or acc.ci_high >= chance):
        among = (f"among the {len(parsed)} parsed answers the accuracy is {acc.value:.3f} [{acc.ci_low:.3f}, "
                 f"{acc.ci_high:.3f}], not below chance" if parsed else "no answer was one of the choices")
        return Guard("below_chance", "warn", f"{head} because {unparsed:.0%} of {graded} answers are none "
                     f"of the choices and score 0; {among}: the answers are not being read, not wrong — "
                     f"{fix}", chance)
    read = f" (among the {len(parsed)} parsed answers: {acc.value:.3f})" if parsed and unparsed > 0 else ""
    return Guard("below_chance", "warn", f"{head}{read}: the model is systematically wrong — read the answers "
                 f"in samples.jsonl; a label mapping or prompt problem is likelier than a weak model", chance)
