"""best_of_n: sample N completions per prompt, keep the one a scorer likes best.

No training, and often as good as RL with the same reward — so run it before RL: it shows what
high-scoring samples look like and exposes a broken reward for free.

- Sampling: N samples per prompt in one batched call, at temperature 1 / top_p 1 unless the
  stage's `generation:` says otherwise (0.8 / 0.95 trades diversity for quality).
- Selection: the highest scorer score per prompt, the first of ties. The scorer is the task
  metric by default (an oracle, so an upper bound), or a classifier, judge, PM or any metric.
  `select: majority` instead keeps the most common answer the task metric extracts (self-
  consistency; ties: the first), which needs no scorer and reads no gold answer.
- Reporting: the task metric of the selected sample is the stage's number (with its CI, on the
  same examples as every other rung). metrics.json `extra` adds the selector's mean and the
  best-of-k curve for k = 1, 2, 4, ..., N from the one pool (ladder/best_of_k.py), beside the KL of
  best-of-k from the base policy: its upper bound log k − (k−1)/k (`kl_bound`) and the exact KL
  over each prompt's own pool (`kl_pool`), far lower when samples repeat. samples.jsonl keeps all
  N samples with both scores.
- Scorer failures and spend: a scorer call that fails after all retries makes its example an
  error (retried on re-run), never a parse failure or a fallback pick; a judge's calls count in
  the stage's cost (stats `scorer_cost_usd`, included in `cost_usd`) and in `ladder check`.
- Export: the selected samples as an SFT data set (rejection sampling), by default sampled on
  the *train* split so a later sft stage never trains on its own test prompts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ladder.backends.base import CallStats
from ladder.best_of_k import best_of_k, curve, majority, majority_curve, select
from ladder.config import Section, StageConfig
from ladder.guards import subsample
from ladder.metrics import Metric
from ladder.scorers import Scorer, ScorerSpec, build_scorer, estimate_scorer, reads_targets
from ladder.stages import Collected, Prompt, StageContext, collect, metric_records, summarize
from ladder.stages.zero_shot import ZeroShot
from ladder.stats import mean_ci
from ladder.store import atomic_write
from ladder.types import Guard, Message, Record, Sample, StageResult

# Completions per record() call: enough for a scorer model to batch well, few enough that a
# killed run loses little scoring work (the generations themselves are cached either way).
SCORE_BATCH = 256


class ExportConfig(Section):
    split: Literal["train", "test"] = "train"
    """Where the exported prompts come from. train: a seeded draw from the train split, sampled and
    scored like the test examples (more calls) — what an sft stage should train on. test: the
    evaluated selections themselves (no extra calls), flagged: training on them contaminates the test."""
    examples: int | Literal["all"] | None = Field(None)
    """How many train examples to draw; default: as many as the test subsample."""
    min_score: float | None = None
    """Keep only rows whose selected sample scores at least this under the scorer."""
    seed: int | None = None
    """Seed of the train draw; defaults to the experiment seed."""

    @field_validator("examples")
    @classmethod
    def _positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1 (or 'all')")
        return v


class BestOfNConfig(StageConfig):
    type: Literal["best_of_n"] = "best_of_n"
    n: int = Field(8, ge=1, le=10_000)
    """Samples per prompt. 8 is fine, 100 is great; the curve shows what each doubling buys."""
    scorer: ScorerSpec = Field("metric", validate_default=True)
    """What picks the best sample: metric (the task metric — an oracle), {type: classifier | judge
    | pm, ...}, {type: python, function: ...} or any metric type. See ladder/scorers."""
    select: Literal["scorer", "majority"] = "scorer"
    """scorer: the sample the scorer rates highest. majority: the most common answer the task
    metric extracts (its `extracted`, e.g. the number for numeric), the first of ties — self-
    consistency, as lm-eval's maj@k; no scorer, no gold answers, so a deployable method."""
    export: ExportConfig | None = None
    """Write the selected samples as an SFT data set to <run_dir>/sft.jsonl: `export: true`, or
    {split, examples, min_score, seed}."""

    @field_validator("export", mode="before")
    @classmethod
    def _export_flag(cls, v: Any) -> Any:
        if v is True:
            return {}
        return None if v is False else v

    @field_validator("generation")
    @classmethod
    def _n_is_ours(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v and "n" in v:
            raise ValueError("set the number of samples with the stage's `n:`, not generation.n")
        return v

    @model_validator(mode="after")
    def _majority_has_no_scorer(self) -> BestOfNConfig:
        if self.select == "majority" and "scorer" in self.model_fields_set:
            raise ValueError("select: majority votes on the task metric's extracted answers and uses no "
                             "scorer: remove `scorer:`, or drop `select: majority` to select by the scorer")
        return self

    def generation_defaults(self) -> dict[str, Any]:
        # Sampling, not greedy: the pool must be diverse for selection to buy anything.
        return {"temperature": 1.0, "top_p": 1.0, "n": self.n}


class BestOfN(ZeroShot):
    """Asks exactly what zero_shot asks (its prompts), N times, so the two rows compare pairwise."""

    Config = BestOfNConfig
    family = "sampling"  # N samples, one selected: the advice suggests distilling it

    @classmethod
    def reads_test_targets(cls, config: BestOfNConfig) -> bool:
        # The selector picks among the test examples' samples; a majority vote reads no target.
        return config.select != "majority" and reads_targets(config.scorer)

    @classmethod
    def selects_by(cls, config: BestOfNConfig) -> Any:
        return None if config.select == "majority" else config.scorer

    @classmethod
    def reads(cls, cfg: BestOfNConfig) -> list[str]:
        return [cls.TRAIN_SPLIT] if cfg.export is not None and cfg.export.split == "train" else []

    @staticmethod
    def check_inputs(cfg: BestOfNConfig, task) -> None:
        """Called by the runner before anything is written: an export drawn from train needs one."""
        if cfg.export is not None and cfg.export.split == "train":
            task.examples("train")

    @staticmethod
    def check_metric(cfg: BestOfNConfig, metric_cls: type) -> tuple[str, str, str] | None:
        """(stage key, message, fix) when this stage cannot work with the task metric (config.py asks)."""
        if cfg.select == "majority" and not metric_cls.extracts:
            return ("select", f"select: majority votes on the answer the task metric extracts from each sample, and "
                    f"metric '{metric_cls.Config.model_fields['type'].default}' extracts none",
                    "use a metric that reads an answer out of the text (numeric, regex, exact_match, choice, "
                    "or python returning Score(extracted=...)), or select by a scorer")
        return None

    def scorer_estimate(self, ctx: StageContext, prompts: list[Prompt]) -> dict[str, Any] | None:
        """For `ladder check`: the scorer's calls — one per sample (at most: repeats are asked once),
        on the test pool and on an export's train draw."""
        cfg: BestOfNConfig = self.config
        count = len(prompts)
        if cfg.export is not None and cfg.export.split == "train":
            exported = cfg.export.examples
            count += len(ctx.task.examples("train")) if exported == "all" else exported or len(prompts)
        return estimate_scorer(cfg.scorer, ctx, [p.example for p in prompts], count * cfg.n, ctx.gen.max_tokens)

    def run(self, ctx: StageContext) -> StageResult:
        """Sample N per test prompt and keep one: the scorer's best, or (select: majority) the most
        common extracted answer. A majority vote reads each sample's `extracted` (what the metric
        read out of the completion), never ex.target: not an oracle (see reads_test_targets)."""
        cfg: BestOfNConfig = self.config
        vote = cfg.select == "majority"
        # The scorer is built before sampling so a bad one fails before any generation is paid for.
        scorer = None if vote else build_scorer(cfg.scorer, ctx, field=f"stages.{cfg.name}.scorer")
        prompts, guards = self.prompts(ctx)
        started = time.perf_counter()
        got = self._collect(ctx, scorer, prompts)
        if vote:
            extra, more = majority_report(got.records, cfg.n, ctx.experiment.config.seed)
        else:
            extra, more = report(got.records, cfg.n, scorer, oracle=self.reads_test_targets(cfg))
            if ctx.metric.extracts:  # majority@k beside best-of-k, from the same pool
                add_majority(extra, got.records, cfg.n, ctx.experiment.config.seed)
            from ladder.scorers.pm import pm_guards

            more += pm_guards(scorer, ctx, "the selection", ctx.resolved.from_stage)
        guards += more
        if ctx.gen.temperature == 0 and cfg.n > 1:
            guards.append(Guard("best_of_n", "warn", f"temperature 0 makes all {cfg.n} samples the same "
                                f"greedy answer, so {'a vote' if vote else 'selection'} buys nothing; leave the "
                                "stage's default temperature 1 (or 0.8 with top_p 0.95)", 0.0))
        if cfg.export is not None:
            extra["export"], export_guards = self._export(ctx, scorer, got.records)
            guards += export_guards
        calls = scorer.calls if isinstance(scorer, Scorer) else None
        if calls is not None:
            extra["scorer_calls"] = {"generated": calls.generated, "cached": calls.cached, "errors": calls.errors}
        result = summarize(ctx, got.records, got.errors, time.perf_counter() - started, guards)
        stats = result.stats
        stats.resumed_examples = got.resumed
        # Every model call the stage made costs: the judge's verdicts, and the export's samples.
        stats.scorer_cost_usd = scorer_cost(got.records)
        stats.cost_usd += stats.scorer_cost_usd + extra.get("export", {}).get("cost_usd", 0.0)
        tokens = scorer_tokens(got.records)  # the judge's tokens, as its cost above
        stats.scorer_prompt_tokens, stats.scorer_completion_tokens = tokens["prompt_tokens"], tokens["completion_tokens"]
        stats.prompt_tokens += tokens["prompt_tokens"]
        stats.completion_tokens += tokens["completion_tokens"]
        result.extra = dataclasses.replace(result.extra, **extra)  # each a declared section of Extra
        return result

    def _collect(self, ctx: StageContext, scorer: Metric | None, prompts: list[Prompt], path: Path | None = None
                 ) -> Collected:
        """scorer None: select by majority vote."""
        record = majority_records if scorer is None else partial(records, scorer=scorer)
        return collect(ctx, prompts, record, batch=max(1, SCORE_BATCH // self.config.n), path=path)

    def _export(self, ctx: StageContext, scorer: Metric | None, test_records: list[Record]
                ) -> tuple[dict[str, Any], list[Guard]]:
        cfg: ExportConfig = self.config.export
        guards = []
        if cfg.split == "test":
            pool = test_records
            guards.append(Guard("export", "warn", "the SFT export holds the test examples' own prompts: "
                                "an sft stage trained on it is evaluated on what it trained on; use "
                                "export.split: train", float(len(pool))))
        else:
            seed = ctx.experiment.seed_for(cfg.seed)
            n = len(ctx.examples) if cfg.examples is None else cfg.examples
            train, _ = subsample(ctx.task.examples("train"), n, seed, ctx.experiment.config.guards)
            prompts = [Prompt(ex, ctx.task.render(ex)) for ex in train]
            # Its own call counter: the stage's stats describe the evaluation, not the export.
            sub = dataclasses.replace(ctx, calls=CallStats())
            pool = self._collect(sub, scorer, prompts, path=ctx.run_dir / "export_samples.jsonl").records
        # The train draw's own samples and verdicts are spend of this stage (the test ones are counted already).
        cost = 0.0 if cfg.split == "test" else sum(row.get("cost", 0.0) for r in pool for row in r.samples) \
            + scorer_cost(pool)
        rows = [sft_row(r) for r in pool if cfg.min_score is None or r.after["selector"] >= cfg.min_score]
        path = ctx.run_dir / "sft.jsonl"
        atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        if not rows:
            guards.append(Guard("export", "warn", f"no selected sample reached min_score {cfg.min_score}: "
                                "the SFT export is empty; lower export.min_score", 0.0))
        return {"path": str(path), "rows": len(rows), "candidates": len(pool), "split": cfg.split,
                "min_score": cfg.min_score, "cost_usd": cost,
                "mean_score": sum(row["score"] for row in rows) / len(rows) if rows else None}, guards


def records(ctx: StageContext, prompts: list[Prompt], samples: list[list[Sample]],
            scorer: Metric) -> list[Record]:
    """samples.jsonl lines: every sample with its task metric (`score`) and selector score
    (`selector`); the record's `score` is the selected sample's metric, `selected` its index."""
    recs = metric_records(ctx, prompts, samples)
    rows = [(p.example, row) for p, rec in zip(prompts, recs) for row in rec.samples if "score" in row]
    if scorer is ctx.metric:  # the oracle: the metric already is the selector
        for _, row in rows:
            row["selector"] = row["score"]
    else:  # one batched call over every completion of every prompt here
        scores = scorer.score_batch([ex for ex, _ in rows], [row["text"] for _, row in rows])
        for (_, row), s in zip(rows, scores):
            if s.meta:
                row["selector_meta"] = s.meta
            if s.error is not None:
                row["selector_error"] = s.error
                continue
            row["selector"] = s.value
            if s.extracted is not None:
                row["selector_extracted"] = s.extracted
    for rec in recs:
        if rec.after.get("metric_error"):
            continue  # the task metric's own call failed: an error already, retried on re-run
        failed = [row["selector_error"] for row in rec.samples if "selector_error" in row]
        if failed:
            # A scorer call that failed is no verdict: selecting among the rest (or falling back to
            # sample 0) would report a row that was never judged. The example is an error, and a
            # re-run retries it (its generations and the verdicts that did come back are cached).
            rec.score, rec.error = None, True
            rec.after["scorer_error"] = failed[0]
            continue
        ok = [i for i, row in enumerate(rec.samples) if "selector" in row]
        if ok:
            best = ok[select([rec.samples[i]["selector"] for i in ok])]
            rec.score = rec.samples[best]["score"]
            rec.after.update(selected=best, selector=rec.samples[best]["selector"])
            if "metrics" in rec.after:  # the further metrics (`metrics:`) of the selected sample, too
                rec.after["metrics"] = rec.samples[best]["metrics"]
    return recs


def majority_records(ctx: StageContext, prompts: list[Prompt], samples: list[list[Sample]]) -> list[Record]:
    """samples.jsonl lines for select: majority: each sample's `selector` is the share of the pool
    that voted for its answer; the record's `selected` is the majority pick, `answer` its answer."""
    recs = metric_records(ctx, prompts, samples)
    for rec in recs:
        ok = [i for i, row in enumerate(rec.samples) if "score" in row]
        if not ok:
            continue
        answers = [rec.samples[i]["extracted"] for i in ok]
        for i, a in zip(ok, answers):
            rec.samples[i]["selector"] = answers.count(a) / len(ok)
        best = ok[majority(answers)]
        pick = rec.samples[best]
        rec.score = pick["score"]
        rec.after.update(selected=best, selector=pick["selector"], answer=pick["extracted"])
        if "metrics" in rec.after:
            rec.after["metrics"] = pick["metrics"]
    return recs


def add_majority(extra: dict[str, Any], recs: list[Record], n: int, seed: int) -> None:
    """Put majority@k into the curve's points (a line beside best-of-k) and say how it was computed."""
    pools = [([r["extracted"] for r in rows], [r["score"] for r in rows])
             for rows in ([row for row in rec.samples if "score" in row] for rec in recs)]
    if not recs:
        return
    points, how = majority_curve(pools, n, seed)
    for point, maj in zip(extra["curve"], points):
        point.update(majority=maj["majority"], majority_ci=maj["majority_ci"])
    extra["majority_curve"] = how


def majority_report(recs: list[Record], n: int, seed: int) -> tuple[dict[str, Any], list[Guard]]:
    """metrics.json `extra` of select: majority: the vote's confidence, the majority@k curve (with
    the oracle best-of-k, i.e. pass@k for a 0/1 metric, as the ceiling a better selector could
    reach) and how many distinct answers the pools held."""
    pools = [[row for row in rec.samples if "score" in row] for rec in recs]
    answers = [[row["extracted"] for row in rows] for rows in pools]
    points, how = majority_curve([(a, [r["score"] for r in rows]) for a, rows in zip(answers, pools)], n, seed) \
        if recs else ([], "")
    for point in points:
        k = point["k"]
        best = mean_ci([best_of_k(s, min(k, len(s))) for s in ([r["score"] for r in rows] for rows in pools) if s])
        point.update(oracle_best_of_k=best.value, oracle_best_of_k_ci=[best.ci_low, best.ci_high])
    voted = sum(len(a) for a in answers)
    unanswered = sum(a is None for ans in answers for a in ans)
    extra: dict[str, Any] = {
        "selector": {"name": "majority", "oracle": False,
                     "selected": mean_ci([rec.after["selector"] for rec in recs]).to_dict(),
                     "scored_samples": voted, "no_answer": unanswered},
        "curve": points,
        "majority_curve": how,
        "distinct_answers_per_prompt": sum(len(set(a)) for a in answers) / len(answers) if answers else 0.0,
        "distinct_per_prompt": sum(len({r["text"] for r in rows}) for rows in pools) / len(pools) if pools else 0.0,
    }
    guards = []
    if points:
        first, last = points[0], points[-1]
        guards.append(Guard("best_of_n", "info", f"majority vote of 1 → {last['k']}: task metric "
                            f"{first['majority']:.3f} → {last['majority']:.3f} (the vote reads no gold "
                            f"answer; any-correct ceiling {last['oracle_best_of_k']:.3f})",
                            last["majority"] - first["majority"]))
    if voted and unanswered == voted:
        guards.append(Guard("majority", "warn", f"none of the {voted} samples had an extracted answer, so "
                            "every vote was 'no answer' and the pick is always sample 0; check the metric's "
                            "extraction (a python metric must return Score(extracted=...))", float(voted)))
    elif voted and unanswered / voted > 0.5:
        guards.append(Guard("majority", "warn", f"{unanswered} of {voted} samples had no extracted answer "
                            f"({unanswered / voted:.0%}); 'no answer' is a candidate of the vote, as in "
                            "lm-eval's maj@k, so it wins pools where most samples missed the format",
                            float(unanswered)))
    return extra, guards

def scorer_cost(recs: list[Record]) -> float:
    """USD the scorer's model calls cost for these records (a judge puts each call's price on the
    first completion that asked it; local scorers cost nothing)."""
    return sum(row.get("selector_meta", {}).get("cost_usd", 0.0) for rec in recs for row in rec.samples)


def scorer_tokens(recs: list[Record]) -> dict[str, int]:
    """Prompt and completion tokens of the scorer's model calls for these records (as scorer_cost)."""
    meta = [row.get("selector_meta", {}) for rec in recs for row in rec.samples]
    return {kind: sum(int(m.get(kind, 0)) for m in meta) for kind in ("prompt_tokens", "completion_tokens")}


def report(recs: list[Record], n: int, scorer: Metric, oracle: bool) -> tuple[dict[str, Any], list[Guard]]:
    """metrics.json `extra` (selector mean, best-of-k curve, parse failures) and the guards."""
    per_prompt = [[row for row in rec.samples if "selector" in row] for rec in recs]
    points = curve([([r["selector"] for r in rows], [r["score"] for r in rows]) for rows in per_prompt], n,
                   texts=[[r["text"] for r in rows] for rows in per_prompt]) if recs else []
    scored = [row for rows in per_prompt for row in rows]
    failures = sum(1 for row in scored if row.get("selector_meta", {}).get("parsed") is False)
    distinct = [len({row["text"] for row in rows}) for rows in per_prompt]
    extra: dict[str, Any] = {
        "selector": {"name": scorer.name, "oracle": oracle,
                     "selected": mean_ci([rec.after["selector"] for rec in recs]).to_dict(),
                     "parse_failures": failures, "scored_samples": len(scored)},
        "curve": points,
        "distinct_per_prompt": sum(distinct) / len(distinct) if distinct else 0.0,
    }
    guards = []
    if points:
        first, last = points[0], points[-1]
        guards.append(Guard("best_of_n", "info", f"best-of-1 → best-of-{last['k']}: {scorer.name} "
                            f"{first['selector']:.3f} → {last['selector']:.3f}, task metric "
                            f"{first['metric']:.3f} → {last['metric']:.3f} (KL from the base: {last['kl_pool']:.2f} nats "
                            f"over the sample pool; the bound log k − (k−1)/k is {last['kl_bound']:.2f})",
                            last["metric"] - first["metric"]))
    if oracle:
        guards.append(Guard("oracle", "info", "the selector is the task metric, which reads the gold "
                            "target: this row is an upper bound on best-of-N, not a deployable method; "
                            "use a classifier, judge or pm scorer for that", 1.0))
    if failures:
        guards.append(Guard("scorer_parse", "warn", f"{scorer.name} could not parse {failures} of "
                            f"{len(scored)} verdicts ({failures / len(scored):.0%}); they scored its "
                            "failure_score. Read selector_meta.verdict in samples.jsonl, then make the "
                            "judge's instruction stricter or give it more max_tokens", float(failures)))
    return extra, guards


def sft_row(rec: Record) -> dict[str, Any]:
    """One SFT example in trl's conversational prompt-completion format (what SFTTrainer trains
    on, loss on the completion only), plus `messages` — the whole conversation — for tools that
    read that format instead (trl's language-modeling format, OpenAI-style chat fine-tuning files)."""
    text = rec.samples[rec.selected]["text"]
    answer = Message("assistant", text).to_dict()
    return {"id": rec.id, "prompt": rec.prompt, "completion": [answer],
            "messages": [*rec.prompt, answer], "score": rec.after["selector"], "metric": rec.score}
