"""samples.jsonl records: a prompt's samples scored by the task metric (and the further
`metrics:`), and what a records file resumes by. Re-exported by ladder.stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ladder.backends.base import logprobs
from ladder.cache import cache_key
from ladder.errors import LadderError
from ladder.stages.context import Prompt, StageContext
from ladder.store import atomic_write
from ladder.types import Record, Sample, Score


def write_records(path: Path, records: Sequence[Record]) -> None:
    """A records file holding exactly `records` (replaced atomically: a kill leaves the old one)."""
    atomic_write(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False, default=str) + "\n" for r in records))


def prompt_key(example_id: Any, prompt: list[dict[str, str]]) -> str:
    """What a records file resumes by: the example and the prompt's content (messages as written
    to samples.jsonl). Sampling settings are the run folder's (its run id hashes them); a pass with
    other settings goes through `generate()`, whose model-call cache keys include them."""
    return cache_key({"id": str(example_id), "prompt": prompt})


def record_key(rec: Record) -> str:
    """prompt_key() of a record."""
    return prompt_key(rec.id, rec.prompt)


def metric_records(ctx: StageContext, prompts: Sequence[Prompt], samples: Sequence[list[Sample]]
                   ) -> list[Record]:
    """samples.jsonl lines for these prompts, every sample scored by the task metric. A metric that
    runs a model (a judge) gets every completion here in one `score_batch` call, which asks its
    model concurrently through the cache, as generation does."""
    if ctx.metric.needs_probabilities:
        probs = probability_scores(ctx, prompts)
        return [metric_record(ctx, p, s, prob) for p, s, prob in zip(prompts, samples, probs)]
    ok = [(p.example, s.text) for p, ss in zip(prompts, samples) for s in ss if s.finish_reason != "error"]
    scores = iter(ctx.metric.score_batch([ex for ex, _ in ok], [t for _, t in ok]))
    recs = [metric_record(ctx, p, ss, scores=[next(scores) for s in ss if s.finish_reason != "error"])
            for p, ss in zip(prompts, samples)]
    if ctx.extra_metrics:
        add_extra_metrics(ctx, prompts, recs)
    return recs


def add_extra_metrics(ctx: StageContext, prompts: Sequence[Prompt], recs: list[Record]) -> None:
    """Score every scored sample by each further metric (`metrics:`): the sample's `metrics` holds
    {name: score}, the record's `metrics` their mean over its samples (a selecting stage replaces
    it with its selected sample's). A further judge's failed call makes the example an error too."""
    rows = [(p.example, row) for p, rec in zip(prompts, recs) for row in rec.samples if "score" in row]
    for name, metric in ctx.extra_metrics.items():
        for (_, row), score in zip(rows, metric.score_batch([ex for ex, _ in rows], [r["text"] for _, r in rows])):
            if score.error is not None:
                row["metric_errors"] = {**row.get("metric_errors", {}), name: score.error}
            else:
                row.setdefault("metrics", {})[name] = score.value
            if score.meta and metric.batched:
                row.setdefault("metrics_meta", {})[name] = score.meta
    for rec in recs:
        scored = [row for row in rec.samples if "score" in row]
        failed = [e for row in scored for e in row.get("metric_errors", {}).values()]
        if failed and not rec.error:
            rec.score, rec.error = None, True
            rec.after["metric_error"] = failed[0]
        elif scored and not rec.error:
            rec.after["metrics"] = {name: sum(row["metrics"][name] for row in scored) / len(scored)
                              for name in ctx.extra_metrics}


def metric_record(ctx: StageContext, p: Prompt, samples: list[Sample], prob: Score | None = None,
                  scores: Sequence[Score] | None = None) -> Record:
    """One samples.jsonl line: the prompt, and each sample with its task-metric score (`prob`: a
    probability metric's score of the prompt, when the caller batched it; `scores`: each
    non-failed sample's score, when the caller batched them)."""
    rows = []
    if prob is None and ctx.metric.needs_probabilities:
        prob = probability_scores(ctx, [p])[0]
    given = iter(scores) if scores is not None else None
    failed = None
    for s in samples:
        row = s.to_dict()
        if s.finish_reason != "error":
            score = prob or (next(given) if given is not None else ctx.metric.score(p.example, s.text))
            if score.meta and ctx.metric.batched:  # a judge's verdict, whether it parsed, what the call cost
                row["score_meta"] = score.meta
            if score.error is not None:
                # A judge call that failed is no verdict: the example is an error, retried on re-run.
                row["score_error"] = failed = score.error
            else:
                row.update(score=score.value, extracted=score.extracted)
        rows.append(row)
    ok = [r["score"] for r in rows if "score" in r] if failed is None else []
    # A selecting stage (best_of_n) adds its selection to the record's `after` before it is written.
    rec = Record(id=p.example.id, target=p.example.target, prompt=[m.to_dict() for m in p.messages],
                 samples=rows, score=sum(ok) / len(ok) if ok else None, error=not ok, info=dict(p.info))
    if failed is not None:
        rec.after["metric_error"] = failed
    return rec


def probability_scores(ctx: StageContext, prompts: Sequence[Prompt]) -> list[Score]:
    """A probability metric's score of each prompt: it reads the model, not a sample's text, so
    every sample of a prompt gets the same score. One cached log-probability call for them all."""
    if not ctx.backend.supports_logprobs:
        raise LadderError(f"metric '{ctx.metric.name}' reads the model's probabilities of the answers, "
                          f"and the {ctx.backend.config.backend} backend gives none", field="metric",
                          fix="use it with an hf model, or use a text metric such as choice")
    from ladder.metrics.probability import probability_scores_with

    return probability_scores_with(ctx.metric, [p.example for p in prompts], [p.messages for p in prompts],
                                   lambda qp, qc: logprobs(ctx.backend, ctx.cache, qp, qc),
                                   ctx.backend.continuation_token_counts)
