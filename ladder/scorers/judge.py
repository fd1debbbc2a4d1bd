"""judge: a prompted language model grades each completion, through any ladder backend.

The judge's calls go through the same cached `generate()` as the stages (a re-run asks nothing
twice) and the same backend pool (a judge that is the experiment's model shares its weights).
Verdicts are parsed leniently — "Yes.", "**No**", "Rating: 8/10", "[[7]]" — and a verdict that
still cannot be parsed scores `failure_score`, is marked `parsed: false` in its Score's meta, and
is counted by the stage, which warns about it: a judge that rambles is a broken scorer, not noise.
A judge call that fails after all retries is no verdict at all: its Score carries `error`, the
stage records the example as an error (retried on re-run), and nothing is selected or rewarded by it.
Each call's cost and tokens are on its Score's meta (`cost_usd`, `prompt_tokens`,
`completion_tokens`) and count in the stage's cost and tokens.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import ValidationError

from ladder.backends.base import BackendPool, CallStats, generate
from ladder.config import GenerationConfig, Section
from ladder.errors import ConfigError
from ladder.scorers import Scorer, Template, check_template
from ladder.types import Example, Message, Sample, Score

if TYPE_CHECKING:
    from ladder.scorers.context import ScoringContext

INSTRUCTION = ("You are a strict, careful grader. You are shown a task given to an assistant and the "
               "assistant's response. Judge the response only against the criteria, and answer in exactly "
               "the format asked for.")
TEMPLATE = "Criteria: {criteria}\n\n[Task]\n{prompt}\n\n[Response]\n{completion}\n\n{question}"
QUESTIONS = {
    "yes_no": "Does the response meet the criteria? Answer with one word: Yes or No.",
    "1-10": "Rate the response against the criteria from 1 (worst) to 10 (best). Answer with the number only.",
}


class PairwiseConfig(Section):
    against: str
    """The stage whose output on the same example each output is compared with (an earlier stage,
    or the stage itself: its own row is the reference, 0.5 by definition). See docs/judges.md."""


class JudgeConfig(Section):
    type: Literal["judge"] = "judge"
    criteria: str = "The response does what the task asks, and does it correctly."
    """What a good response does: the judge grades against this, so be specific."""
    scale: Literal["yes_no", "1-10"] = "yes_no"
    """yes_no: Yes scores 1 and No 0. 1-10: a rating r scores (r - 1) / 9, so both lie in [0, 1]."""
    model: dict[str, Any] | None = None
    """The judge model, as overrides of the experiment's `model` (e.g. {backend: openai, name:
    gpt-4o-mini}); default: the experiment's model."""
    instruction: str = INSTRUCTION
    """The judge's system prompt."""
    template: Template | None = None
    """The judge's user turn. Default: the criteria, the task prompt, the response and the question
    of the scale. Fields: {criteria}, {question}, {prompt}, {completion}, {target}, data columns."""
    generation: GenerationConfig = GenerationConfig(max_tokens=16)
    """The judge's sampling: greedy and short by default. With n > 1 the parsed verdicts are averaged."""
    failure_score: float = 0.0
    """Score of a verdict that cannot be parsed (such verdicts are counted and warned about)."""
    pairwise: PairwiseConfig | None = None
    """As the task metric only: {against: <stage>} makes the judge compare each output with that
    stage's output on the same example, in both orders; the row's value is the win rate (ties
    count half). `scale` and `failure_score` do not apply; the template names {first} and {second}."""


def parse_verdict(text: str, scale: str) -> float | None:
    """The verdict in a judge's answer: 1.0/0.0 for yes/no, the rating for 1-10; None if absent.

    The first clear verdict wins: judges asked for one word put it first, and later words are
    usually an explanation that may mention the other answer."""
    if scale == "yes_no":
        m = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
        return None if m is None else float(m.group(1).lower() == "yes")
    number = r"(\d+(?:\.\d+)?)"
    for pattern in (rf"\[\[\s*{number}\s*\]\]",                        # [[7]] (MT-bench style)
                    rf"{number}\s*(?:/|out of)\s*10\b",               # 7/10, 7 out of 10
                    rf"(?<![\w.\-–]){number}(?!\d|\.\d|\s*[-–]\s*\d)"):  # a bare 7, not the 1 of "1-10"
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            rating = float(m.group(1))
            return rating if 1 <= rating <= 10 else None
    return None


class JudgeScorer(Scorer):
    Config = JudgeConfig
    # It reads the judge's answer text (its top choice), never token probabilities.
    needs_probabilities = False

    def __init__(self, config: JudgeConfig, ctx: ScoringContext, preflight: bool = True):
        if config.pairwise is not None and type(self) is JudgeScorer:
            # Built as a selector or reward (the metric goes through ladder/metrics/pairwise.py).
            raise ConfigError("pairwise judging compares a row's outputs with another stage's outputs: "
                              "it scores rows, it cannot rank or reward samples", field="pairwise",
                              fix="drop `pairwise:` here; keep it on the task metric (metric:)")
        super().__init__(config, ctx)
        self.template = config.template or TEMPLATE
        check_template(self.template, ctx, "template", extra=("criteria", "question"))
        try:  # resolved exactly like a stage's `model:` override
            model = ctx.experiment.stage_model(ctx.stage.model_copy(update={"model": config.model}))
        except ValidationError as exc:
            raise ConfigError(f"invalid judge model ({exc.errors()[0]['msg']})", field="model",
                              fix="write it like the experiment's `model:` section") from None
        pool = ctx.pool if ctx.pool is not None else BackendPool()
        self.backend = pool.get(model)
        if preflight:
            self.backend.preflight()
        self.cache = ctx.cache
        self.calls = CallStats()
        """The judge's own calls: generated vs. from cache (the stage reports them)."""
        self.cost_usd = 0.0
        """USD of every judge answer this scorer returned (cached ones at their original price)."""

    @classmethod
    def estimate(cls, config: JudgeConfig, ctx: ScoringContext, examples: Sequence[Example], calls: int,
                 completion_tokens: int) -> dict[str, Any]:
        """What `calls` judge calls over these examples cost at most (for `ladder check`): each
        judge prompt counted with an empty response plus `completion_tokens` for the response."""
        if config.pairwise is not None:  # both orders, each prompt reading two responses
            config = config.model_copy(update={"pairwise": None, "template": None})
            calls, completion_tokens = 2 * calls, 2 * completion_tokens
        judge = cls(config, ctx, preflight=False)
        gen = config.generation
        sample = list(examples[:200])  # the mean prompt length of a few hundred is plenty
        per_call = (sum(judge.backend.count_tokens(judge.messages(ex, "")) for ex in sample) / len(sample)
                    if sample else 0) + completion_tokens
        prompt_tokens = round(per_call * calls) * judge.backend.prompt_copies(gen.n)
        output = calls * gen.n * gen.max_tokens
        from ladder.backends.batch import check_costs

        # A judge on `batch: true` pays the batch price, as the stage's own model does.
        costs = check_costs(judge.backend, judge.backend.estimate_cost(prompt_tokens, output))
        return {"scorer": f"judge ({judge.backend.config.name})", "calls": calls, "prompt_tokens": prompt_tokens,
                "max_output_tokens": output, **costs}

    def messages(self, ex: Example, completion: str) -> tuple[Message, ...]:
        user = self.fill(self.template, ex, completion, criteria=self.config.criteria,
                         question=QUESTIONS[self.config.scale])
        return (Message("system", self.config.instruction), Message("user", user))

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        asks = [self.messages(ex, c) for ex, c in zip(examples, completions)]
        unique = list(dict.fromkeys(asks))  # a pool of N samples repeats itself: ask once each
        answers = generate(self.backend, self.cache, [list(m) for m in unique], self.config.generation, self.calls)
        verdicts = {ask: self.verdict(samples) for ask, samples in zip(unique, answers)}
        # What each judge call cost, on the first completion that asked it (repeats asked nothing):
        # the stage adds it to its cost. A cached verdict keeps its price, as a cached sample does.
        # Its tokens go with it, so the stage's tokens columns count the judge's as its cost does.
        costs = {ask: {"cost_usd": sum(s.cost for s in samples),
                       "prompt_tokens": sum(s.prompt_tokens for s in samples),
                       "completion_tokens": sum(s.completion_tokens for s in samples)}
                 for ask, samples in zip(unique, answers)}
        self.cost_usd += sum(c["cost_usd"] for c in costs.values())
        out = []
        for ask in asks:
            score = verdicts[ask]
            if ask in costs:
                score = replace(score, meta={**score.meta, **costs.pop(ask)})
            out.append(score)
        return out

    def verdict(self, samples: list[Sample]) -> Score:
        failed = [s for s in samples if s.finish_reason == "error"]
        if failed:
            # No verdict at all, not a verdict that failed to parse: the example becomes an error
            # and a re-run asks again (errors are never cached).
            return Score(self.config.failure_score, meta={"verdict": f"error: {failed[0].error}"},
                         error=f"the judge call failed after all retries ({failed[0].error})")
        texts = [s.text for s in samples]
        ratings = [parse_verdict(s.text, self.config.scale) for s in samples]
        ratings = [r for r in ratings if r is not None]
        meta = {"verdict": texts[0] if len(texts) == 1 else texts, "parsed": bool(ratings)}
        if not ratings:
            return Score(self.config.failure_score, meta=meta)
        mean = sum(ratings) / len(ratings)
        if self.config.scale == "yes_no":
            return Score(mean, extracted="yes" if mean >= 0.5 else "no", meta=meta)
        return Score((mean - 1) / 9, extracted=f"{mean:g}", meta=meta)
