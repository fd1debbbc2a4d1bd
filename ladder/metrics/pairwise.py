"""Pairwise judging: a judge compares a rung's output with another stage's output, head to head.

`metric: {type: judge, pairwise: {against: zero_shot}, criteria: ..., model: {...}}` — for each test
example the judge sees this rung's output and the named stage's output on the same example, twice:
once with this rung's first and once with it second (AlpacaEval, MT-bench). Position bias cancels:
each order's outcome for this rung (win 1, tie 0.5, loss 0) is averaged, so a judge that always picks
the first position gives every example 0.5. The row's value is the win rate, ties counting half,
with its CI and n like any metric.

- Two orders that disagree (after un-swapping) are counted: `judge_inconsistent` in the stage's
  stats, a warning guard above INCONSISTENT_WARN — a judge that flips with the order is reading the
  position, not the outputs.
- Identical outputs are a tie (0.5) without asking the judge, so the reference stage's own row is
  0.5 by definition: its examples are all "identical", it costs nothing, and an info guard says
  it is the reference.
- An unparsed verdict counts as a tie for that order (neither output is favoured) and is counted
  in `unparsed`, like an absolute judge's.
- An example the reference has no output for (it failed there) is an error of this row too, retried
  on re-run once the reference has it.
- Calls go through the judge's cached, concurrent `generate()`; their cost and tokens are on the
  first score that asked them (summed into the row by ladder/metrics/judged.py).

The config checks (the reference exists and runs first) are ladder/config/judged.py's.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from ladder.backends.base import generate
from ladder.errors import LadderError
from ladder.scorers import check_template
from ladder.scorers.judge import JudgeConfig, JudgeScorer
from ladder.types import Example, Guard, Message, Record, Sample, Score

if TYPE_CHECKING:
    from ladder.resolved import ResolvedStage
    from ladder.scorers.context import ScoringContext


class Plan(Protocol):
    """What pairwise judging reads of a prepared run (ladder.prepared.PreparedRun, which imports
    this module: naming it here would be an import circle)."""

    experiment: Any

    def resolve(self, stage: Any, planning: bool = False) -> ResolvedStage: ...


INSTRUCTION = ("You are a strict, careful grader. You are shown a task given to an assistant and two "
               "responses to it, A and B. Judge them only against the criteria; the order in which they are "
               "shown says nothing about their quality. Answer in exactly the format asked for.")
TEMPLATE = ("Criteria: {criteria}\n\n[Task]\n{prompt}\n\n[Response A]\n{first}\n\n[Response B]\n{second}\n\n"
            "{question}")
QUESTION = ("Which response better meets the criteria? Answer with one word: A, B, or Tie if they are "
            "equally good.")
INCONSISTENT_WARN = 0.2
"""Share of compared examples whose two orders disagree above which the row is flagged."""

_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)          # MT-bench: [[A]], [[C]] = tie
_LEADING = re.compile(r"^\W*(?:response\s+|assistant\s+)?(A|B|tie)\b", re.IGNORECASE)
_NAMED = re.compile(r"\b(?:response|assistant|output)\s+(A|B)\b|\b(tie)\b", re.IGNORECASE)


def parse_preference(text: str) -> str | None:
    """'A', 'B' or 'tie' from a judge's answer ("A", "**B**", "[[A]]", "Response B is better",
    "Tie."); None when it names none. A bare letter counts only at the start: later a lone "a" is
    an article."""
    for pattern in (_BRACKETED, _LEADING, _NAMED):
        m = pattern.search(text.strip())
        if m:
            word = next(g for g in m.groups() if g).lower()
            return {"a": "A", "b": "B", "c": "tie", "tie": "tie"}[word]
    return None


def outcome(preference: str | None, mine_first: bool) -> float | None:
    """This rung's outcome from one order's verdict: 1 it won, 0 it lost, 0.5 a tie; None unparsed."""
    if preference is None:
        return None
    if preference == "tie":
        return 0.5
    return float((preference == "A") == mine_first)


class PairwiseJudge(JudgeScorer):
    """A judge metric with `pairwise:`. Built once per run; `for_stage` gives each stage a copy
    bound to the reference's outputs (or marked as the reference itself)."""

    def __init__(self, config: JudgeConfig, ctx: ScoringContext, preflight: bool = True):
        # The base checks its template against {completion}; the pairwise one names {first}/{second}.
        super().__init__(config.model_copy(update={"template": None}), ctx, preflight)
        self.config = config
        self.template = config.template or TEMPLATE
        check_template(self.template, ctx, "template", extra=("criteria", "question", "first", "second"))
        if config.instruction == JudgeConfig.model_fields["instruction"].default:
            self.instruction = INSTRUCTION  # the default single-response instruction would mislead
        else:
            self.instruction = config.instruction
        self.against = config.pairwise.against
        self.reference: dict[str, str] | None = None
        """Example id → the reference stage's output, once bound to a stage that is not the reference."""
        self.is_reference = False

    def for_stage(self, stage: str, reference: Mapping[str, str] | None) -> PairwiseJudge:
        bound = copy.copy(self)  # the backend, cache and call counts are shared
        bound.is_reference = stage == self.against
        bound.reference = None if bound.is_reference else dict(reference or {})
        return bound

    def messages(self, ex: Example, first: str, second: str = "") -> tuple[Message, ...]:
        user = self.fill(self.template, ex, "", criteria=self.config.criteria, question=QUESTION,
                         first=first, second=second)
        return (Message("system", self.instruction), Message("user", user))

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        if self.is_reference:  # the reference against itself: identical outputs, a tie by definition
            return [Score(0.5, extracted="tie", meta={"pairwise": "reference"}) for _ in examples]
        if self.reference is None:
            raise LadderError("a pairwise judge was asked to score before it was bound to a stage",
                              fix="this is a bug in ladder: please report it")
        pairs: list[tuple[tuple[Message, ...], tuple[Message, ...]] | None] = []
        for ex, mine in zip(examples, completions):
            theirs = self.reference.get(str(ex.id))
            pairs.append(None if theirs is None or theirs == mine else
                         (self.messages(ex, mine, theirs), self.messages(ex, theirs, mine)))
        unique = list(dict.fromkeys(ask for pair in pairs if pair for ask in pair))
        answers = generate(self.backend, self.cache, [list(m) for m in unique], self.config.generation,
                           self.calls) if unique else []
        got = dict(zip(unique, answers))
        costs = {ask: {"cost_usd": sum(s.cost for s in samples),
                       "prompt_tokens": sum(s.prompt_tokens for s in samples),
                       "completion_tokens": sum(s.completion_tokens for s in samples)}
                 for ask, samples in got.items()}
        self.cost_usd += sum(c["cost_usd"] for c in costs.values())
        out = []
        for ex, pair in zip(examples, pairs):
            if pair is None:
                out.append(self._unpaired(ex))
                continue
            score = self._verdict(got[pair[0]], got[pair[1]])
            spent: dict[str, float] = {}
            for ask in pair:  # each call's cost on the first score that asked it
                for k, v in costs.pop(ask, {}).items():
                    spent[k] = spent.get(k, 0) + v
            out.append(Score(score.value, score.extracted, {**score.meta, **spent}, score.error))
        return out

    def _unpaired(self, ex: Example) -> Score:
        if str(ex.id) in (self.reference or {}):
            return Score(0.5, extracted="tie", meta={"pairwise": "identical"})
        return Score(0.5, meta={"pairwise": "no reference"},
                     error=f"the reference stage '{self.against}' has no output for this example (it failed "
                           f"there): re-run the experiment to retry it, then this one")

    def _verdict(self, first: list[Sample], second: list[Sample]) -> Score:
        failed = [s for s in (*first, *second) if s.finish_reason == "error"]
        if failed:
            return Score(0.5, meta={"verdict": f"error: {failed[0].error}"},
                         error=f"the judge call failed after all retries ({failed[0].error})")
        orders = []
        for samples, mine_first in ((first, True), (second, False)):
            got = [outcome(parse_preference(s.text), mine_first) for s in samples]
            got = [g for g in got if g is not None]
            orders.append(sum(got) / len(got) if got else None)
        parsed = all(o is not None for o in orders)
        values = [0.5 if o is None else o for o in orders]  # an unparsed order favours neither
        value = sum(values) / 2
        texts = [s.text for s in first] + [s.text for s in second]
        meta = {"verdict": texts, "parsed": parsed, "orders": values,
                "consistent": parsed and orders[0] == orders[1]}
        return Score(value, extracted="win" if value > 0.5 else "loss" if value < 0.5 else "tie", meta=meta)


def pairwise_of(metric: Any) -> str | None:
    """The stage a metric config (or built metric) compares with, or None when it is not pairwise."""
    config = getattr(metric, "config", metric)
    spec = getattr(config, "pairwise", None)
    return None if spec is None else spec.against


def reference_outputs(path: Any) -> dict[str, str]:
    """Example id → the output a stage's row scored there (a selecting stage's selected sample)."""
    from ladder.store import read_jsonl

    out = {}
    for rec in read_jsonl(path):
        if rec.get("error") or not rec.get("samples"):
            continue
        out[str(rec["id"])] = Record.from_dict(rec).output()
    return out


def bind(plan: Plan, resolved: ResolvedStage, metrics: Sequence[Any]) -> list[Any]:
    """Each pairwise metric of a stage bound to its reference's outputs in this run (read from the
    reference's samples.jsonl); the others as they are. Under `ladder check` (no run folder) nothing
    is read."""
    out = []
    for metric in metrics:
        if not isinstance(metric, PairwiseJudge) or resolved.run_dir is None:
            out.append(metric)
            continue
        against = metric.against
        if resolved.name == against:
            out.append(metric.for_stage(resolved.name, None))
            continue
        stage = next(s for s in plan.experiment.stages if s.name == against)
        path = plan.resolve(stage).run_dir / "samples.jsonl"
        if not (path.parent / "metrics.json").exists():
            raise LadderError(f"stage '{resolved.name}' is judged pairwise against stage '{against}', which has "
                              f"not finished in this run or an earlier one of this config", field="metric.pairwise",
                              fix=f"run '{against}' first (drop --only, or include it)")
        out.append(metric.for_stage(resolved.name, reference_outputs(path)))
    return out


def run_id_part(plan: Plan, stage: Any) -> dict[str, Any]:
    """What a pairwise row's run id adds: the reference's run id (its outputs are half of every
    comparison: re-run it differently and this row is judged again). Empty for other metrics, so
    no other run id changes."""
    exp = plan.experiment
    names = {against for m in (exp.metric, *exp.extra_metrics.values())
             if (against := pairwise_of(m)) is not None and against != stage.name}
    if not names:
        return {}
    from ladder.digests import code_digest

    ids: dict[str, Any] = {}
    for name in sorted(names):
        ref = next((s for s in exp.stages if s.name == name), None)
        try:
            ids[name] = plan.resolve(ref).run_id if ref is not None else None
        except LadderError:
            ids[name] = None
    # This module's code decides a pairwise row's scores: edit it and the rows are judged again.
    return {"pairwise_reference": ids, "pairwise_code": code_digest(PairwiseJudge)}


def pairwise_stats(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts of a pairwise row's comparisons: examples compared (both orders asked), the share whose
    orders disagreed, identical outputs (ties, not asked), and the reference's own examples."""
    out: dict[str, Any] = {}
    compared = [m for m in metas if "consistent" in m]
    if compared:
        bad = sum(not m["consistent"] for m in compared)
        out.update(pairwise_compared=len(compared), judge_inconsistent=bad / len(compared),
                   judge_inconsistent_count=bad)
    for key, what in (("pairwise_identical", "identical"), ("pairwise_reference", "reference")):
        count = sum(m.get("pairwise") == what for m in metas)
        if count:
            out[key] = count
    return out


def pairwise_guards(stats: Mapping[str, Any], name: str) -> list[Guard]:
    out = []
    share = stats.get("judge_inconsistent")
    if share is not None and share > INCONSISTENT_WARN:
        out.append(Guard("judge_inconsistent", "warn",
                         f"the {name} judge's verdict changed with the order of the two outputs on "
                         f"{stats['judge_inconsistent_count']} of {stats['pairwise_compared']} examples ({share:.0%}): "
                         f"it reads the position more than the outputs (those examples count as ties); use a "
                         f"stronger judge model or sharper criteria", share))
    if stats.get("pairwise_reference"):
        out.append(Guard("pairwise_reference", "info",
                         f"the reference of the pairwise {name} metric: every other row's value is its win rate "
                         f"against this row's outputs, so this one is 0.5 by definition (no judge call)", 0.5))
    return out
