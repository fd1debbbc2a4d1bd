"""The primitives a stage that makes more than one pass is written with (self-refine: answer, then
revise the answer; a debate; a verifier's second look): `generate`, `score` and `finish`.

`ladder.evaluate(ctx, prompts)` is the three in one for a stage that asks once. A stage that asks
again with what the model answered first calls them itself:

    drafts = ladder.generate(ctx, first)                 # cached, concurrent, costed
    second = [revision(p, d) for p, d in zip(first, drafts)]
    records = ladder.score(ctx, second, ladder.generate(ctx, second))
    return ladder.finish(ctx, records)                   # samples.jsonl, n, CI, guards

Resuming is the model-call cache's: its keys are the prompt's content, the sampling settings and
the sample index, so a re-run (or a killed run started again) pays for no call it already made,
and a pass is never answered with another pass's answers.
"""

from __future__ import annotations

import time
from typing import Sequence

from ladder.backends.base import generate as cached_generate
from ladder.config import GenerationConfig
from ladder.progress import progress_bar
from ladder.stages import Prompt, StageContext, metric_records, summarize, write_records
from ladder.types import Guard, Record, Sample, StageResult


def generate(ctx: StageContext, prompts: Sequence[Prompt], gen: GenerationConfig | None = None,
             label: str = "generating") -> list[list[Sample]]:
    """The samples of each prompt, in order: `gen.n` per prompt (default: the stage's generation
    settings, `ctx.gen`). Through the model-call cache (a repeated call is free and a re-run
    resumes), concurrent as the backend allows (an API model: many requests in flight), with each
    sample's tokens and cost on it. A call that failed after all retries is a sample whose
    `finish_reason` is "error" (not cached: the next run asks again). `label` names the pass on the
    progress line."""
    out: list[list[Sample]] = [[] for _ in prompts]
    control = ctx.backend.rate_controller()
    with progress_bar(f"{ctx.stage.name}: {label}", total=len(prompts),
                      status=control.status if control is not None else None) as advance:
        def finished(i: int, samples: list[Sample]) -> None:
            out[i] = list(samples)
            advance(1)

        if prompts:
            cached_generate(ctx.backend, ctx.cache, [p.messages for p in prompts], gen or ctx.gen, ctx.calls,
                            finished)
    ctx.generated.extend(s for row in out for s in row)  # paid for, whether or not a record keeps it
    return out


def score(ctx: StageContext, prompts: Sequence[Prompt], samples: Sequence[list[Sample]]) -> list[Record]:
    """One record per prompt: its samples, each scored by the task metric (and the further
    `metrics:`), the record's score their mean. A metric that runs a model (a judge) is asked
    about every sample here in one concurrent, cached batch. A record with no scored sample has
    `error` set: it is left out of n and retried on a re-run."""
    return metric_records(ctx, prompts, samples)


def finish(ctx: StageContext, records: Sequence[Record], guards: Sequence[Guard] = ()) -> StageResult:
    """Write the stage's samples.jsonl (these records, replacing anything an earlier pass or run
    left there) and return the stage's result: the metric's mean and CI over the records without
    an error, the guards (the stop-sequence check, these `guards`, the errors' warning), tokens
    and cost."""
    started = time.perf_counter()
    path = ctx.run_dir / "samples.jsonl"
    write_records(path, records)
    ctx.opened.add(path)
    ok = [r for r in records if not r.error]
    result = summarize(ctx, ok, [r for r in records if r.error], time.perf_counter() - started, guards)
    # summarize counts the samples the records hold; the earlier passes' were paid for too.
    kept = [Sample.from_dict(s) for r in ok for s in r.samples]
    stats = result.stats
    for field, of in (("prompt_tokens", lambda s: s.prompt_tokens), ("completion_tokens", lambda s: s.completion_tokens),
                      ("cached_tokens", lambda s: s.cached_tokens), ("cost_usd", lambda s: s.cost)):
        more = sum(map(of, ctx.generated)) - sum(map(of, kept))
        if more > 0:
            setattr(stats, field, (getattr(stats, field) or 0) + more)
    return result
