"""Experiment → stages in order, with resume.

Everything that can fail on bad input (data, fields, metric, model names) is checked in
`prepare()` before the first byte is written under results/. Each stage's folder is named by a
hash of everything that determines its output, so the same config lands in the same folder and a
finished stage (metrics.json present) is not run again.

Each stage is resolved once (`PreparedRun.resolve` → `ResolvedStage`): its model with `from_stage`
replaced by what that stage produced, its generation, the metric, its run id and folder. The
stage gets that through its context and merges no config sections itself.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ladder.backends.batch import check_costs
from ladder.backends.prices import cached_estimate
from ladder.cache import Cache, cache_key
from ladder.evidence import flag_damaged, samples_mismatch
from ladder.config import Experiment, StageConfig, rl_probability_problem
from ladder.manifest import manifest, write_examples
from ladder.scorers import estimate_scorer
from ladder.metrics.judged import add_estimates, is_scorer_type, same_scorer, selected_by_metric
from ladder.metrics.redteam import respondent_estimate
from ladder.prepared import PRODUCTS, PreparedRun, configure, prepare  # noqa: F401 - ladder.runner's public names
from ladder.progress import console
from ladder.reach import check, scorer_models
from ladder.errors import LadderError
from ladder.estimate import long_training, training_plan
from ladder.fine_tune_price import fine_tuning_cost, priced_as_fine_tuned
from ladder.registry import STAGES
from ladder.stages import stage_hook
from ladder.store import ExperimentLock, atomic_write, read_json, write_json
from ladder.table import write_summary
from ladder.types import Guard, StageResult


def preflight_run(plan: PreparedRun, only: list[str] | None) -> None:
    """What can fail only when a run starts, checked before its results folder is touched: the
    model-call cache can be written (a damaged one is replaced here), and each remote model a
    stage still has to call (its own, and a judge scorer's or reward's) answers and accepts the key
    (one free request)."""
    exp = plan.experiment
    probed: set[int] = set()
    for stage in exp.stages:
        if stage.skip or (only and stage.name not in only):
            continue
        finished = _finished(plan, stage)
        if finished is not None and not finished.stats.errors:
            continue  # answered from results: a re-run of a finished experiment calls nothing
        resolved = plan.configured[stage.name]  # a model still to be trained cannot be probed yet
        own = [("", resolved.model)] if resolved.from_stage is None else []
        for prefix, model in [*own, *scorer_models(exp, stage)]:
            backend = plan.pool.get(model)
            if id(backend) not in probed:
                probed.add(id(backend))
                check(prefix, backend.probe)
    cache = Cache(exp.config.cache_dir)
    try:
        cache.check_writable()
    finally:
        cache.close()


AfterStage = Callable[[StageConfig, "StageResult | None"], bool]


def run_experiment(exp: Experiment, only: list[str] | None = None,
                   after: AfterStage | None = None) -> list[StageResult]:
    """Run the stages in order (or just `only`, reusing the others' finished results). Stages with
    a `skip:` reason are left out. `after(stage, result)` is called once per stage in order
    (result None when skipped or, outside `only`, never finished); False stops the loop there —
    this is how `ladder climb` stops at the first rung that reaches its target."""
    unknown = sorted(set(only or ()) - {s.name for s in exp.stages})
    if unknown:
        raise LadderError(f"--only names no stage called {', '.join(unknown)}",
                          where=str(exp.source) if exp.source else None,
                          fix=f"use stage names from the config: {', '.join(s.name for s in exp.stages)}")
    plan = prepare(exp)
    reused = _reusable(plan, only) if only else {}
    preflight_run(plan, only)
    folder = exp.results_path
    with ExperimentLock(folder):
        atomic_write(folder / "experiment.yaml", yaml.safe_dump(exp.resolved(), sort_keys=False))
        write_json(folder / "manifest.json", _manifest(plan))
        write_examples(folder, plan.examples)  # the test examples' data fields, for ladder.load
        for guard in plan.guards:
            _say(guard)
        for guard in long_training(plan, [s for s in exp.stages if not s.skip and (not only or s.name in only)],
                                   finished=_finished):
            _say(guard)
        cache = Cache(exp.config.cache_dir)
        results: list[StageResult] = []
        try:
            for stage in exp.stages:
                if stage.skip:
                    console.print(f"[bold]{stage.name}[/bold] skipped: {stage.skip}", highlight=False)
                    result = None
                elif only and stage.name not in only:
                    result = reused.get(stage.name)
                elif _server_down(plan, stage):
                    console.print(f"[bold]{stage.name}[/bold] skipped: {_server_down(plan, stage)}; its "
                                  f"model is the same, so it would only fail the same way", highlight=False)
                    result = None
                else:
                    result = run_stage(plan, stage, cache)
                if result is not None:
                    plan.record(stage, result)
                    results.append(result)
                    write_summary(folder, results)
                    write_json(folder / "manifest.json", _manifest(plan))
                if after is not None and not after(stage, result):
                    break
        finally:
            cache.close()
            plan.pool.close()
    return results


def _server_down(plan: PreparedRun, stage: StageConfig) -> str | None:
    """Why the stage's API server counts as down in this run (an earlier stage met DOWN_AFTER server
    errors in a row on the same model), or None."""
    resolved = plan.configured[stage.name]
    if resolved.from_stage is not None:
        return None
    return plan.pool.get(resolved.model).down


def _reusable(plan: PreparedRun, only: list[str]) -> dict[str, StageResult]:
    """Finished results of the stages `--only` leaves out, looked up before anything is written,
    so a stage in --only whose `from_stage` has no model fails now, not after the results folder
    was rewritten for a run that cannot happen."""
    reused: dict[str, StageResult] = {}
    exp = plan.experiment
    for stage in exp.stages:
        if stage.skip:
            continue
        if stage.name not in only:
            result = _finished(plan, stage)
            if result is not None:
                reused[stage.name] = result
                plan.record(stage, result)
            continue
        upstream = plan.configured[stage.name].from_stage
        if upstream is not None and upstream not in only and "model" not in plan.produced.get(upstream, {}):
            raise LadderError(f"stage '{stage.name}' uses the model of stage '{upstream}', which --only "
                              f"leaves out and which has no finished result for this config in "
                              f"{exp.results_path}", where=str(exp.source) if exp.source else None,
                              field=f"stages.{stage.name}.model.from_stage",
                              fix=f"add --only {upstream}, or run the experiment once without --only")
    return reused


def _finished(plan: PreparedRun, stage: StageConfig) -> StageResult | None:
    """A stage's result from an earlier run of the same config, if there is one."""
    try:
        path = plan.resolve(stage).run_dir / "metrics.json"
    except LadderError:  # its model comes from a stage that has not run
        return None
    if not path.exists():
        return None
    result = _marked(stage, StageResult.from_dict(read_json(path)), plan.experiment.metric)
    if flag_damaged(plan.experiment.results_path, result):  # reused as it is, but not silently
        _say(result.guards[-1])
    return result


def _marked(stage: StageConfig, result: StageResult, metric: Any) -> StageResult:
    """The result with its stage's oracle flag, decided by the stage class from the config (a
    metrics.json written before the flag existed gets it too)."""
    result.oracle = STAGES.get(stage.type).reads_test_targets(stage)
    result.selected_by_metric = selected_by_metric(stage, metric)
    if result.selected_by_metric:
        result.oracle = False  # `scorer: metric` on a judged task reads no gold answer
    return result


def run_stage(plan: PreparedRun, stage: StageConfig, cache: Cache) -> StageResult:
    exp = plan.experiment
    resolved = plan.resolve(stage)
    run_dir = resolved.run_dir
    done = run_dir / "metrics.json"
    if done.exists():
        result = _marked(stage, StageResult.from_dict(read_json(done)), exp.metric)
        damaged = samples_mismatch(exp.results_path, result)
        if damaged:
            # Re-scored from scratch (the generations come from the model-call cache): an edited
            # record must not be resumed as if it were the stage's own. The old file is kept aside.
            if (run_dir / "samples.jsonl").exists():
                (run_dir / "samples.jsonl").replace(run_dir / "samples.jsonl.damaged")
            console.print(f"[yellow]warn[/yellow] {damaged}; re-scoring the stage (the damaged file is kept "
                          f"as samples.jsonl.damaged)", highlight=False)
        elif not result.stats.errors:
            console.print(f"[bold]{stage.name}[/bold] done earlier ({done}): 0 new generations")
            return result
        else:
            # Examples that failed after all retries (API errors) are retried; the rest resume.
            console.print(f"[bold]{stage.name}[/bold] retrying the {result.stats.errors} examples that "
                          f"failed earlier", highlight=False)
    impl = STAGES.get(stage.type)(stage)
    ctx = plan.context(resolved, cache)
    if ctx.metric.needs_probabilities and ctx.backend.rl_policy:
        # The config check catches `from_stage: <rl stage>`; this catches a path to an RL model.
        message, fix = rl_probability_problem(stage.name, ctx.metric.name, resolved.model.name)
        raise LadderError(message, field="metric", fix=fix)
    started = time.perf_counter()
    control = ctx.backend.rate_controller()  # API models: the rate controller's record
    mark = control.mark() if control else None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "stage.json", {"stage": stage.model_dump(mode="json"),
                                        "model": resolved.model.model_dump(mode="json"),
                                        "generation": resolved.generation.model_dump(mode="json")})
    try:
        result = impl.run(ctx)
    except BaseException:
        _drop_if_empty(run_dir)
        raise
    result.stats.seconds = round(time.perf_counter() - started, 3)
    if control and control.ok + control.rate_limited > mark["ok"] + mark["rate_limited"]:
        result.stats.rate_control = control.report(mark)
    sent = ctx.backend.sent_sampling(ctx.gen)
    if sent is not None:  # the backend sends only some of temperature/top_p: say which
        result.stats.sampling_sent = sent
    # The subsample's guards describe the test examples; a stage measured on other data
    # (reward_model's held-out pairs) does not inherit them.
    result.guards = [*(plan.guards if impl.evaluates_test_subsample else ()), *result.guards]
    _marked(stage, result, exp.metric)
    write_json(done, result.to_dict())  # last and atomic: its presence means "done"
    m = result.metric
    resumed = result.stats.resumed_examples or 0
    # n=0 (every request failed) has no value: say so rather than print "nan".
    value = (f"= {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]" if m.n else "has no value (no example scored)")
    mark = " (selected by the metric)" if result.selected_by_metric else ""
    console.print(f"[bold]{stage.name}[/bold]{mark} {result.metric_name} {value} n={m.n} · {ctx.calls.generated} generated, "
                  f"{ctx.calls.cached} from cache" + (f", {resumed} examples resumed from samples.jsonl"
                                                      if resumed else "")
                  + f" · {result.stats.seconds:.1f} s", highlight=False)
    for guard in result.guards:
        if guard.level == "warn" and guard.name != "subsample":
            _say(guard)
    return result


def _manifest(plan: PreparedRun) -> dict[str, Any]:
    return manifest(plan.experiment, plan.examples,
                    {s.name: _run_id_or_none(plan, s) for s in plan.experiment.stages if not s.skip},
                    plan.train_subsamples)


def _run_id_or_none(plan: PreparedRun, stage: StageConfig) -> str | None:
    try:
        return plan.resolve(stage).run_id
    except LadderError:  # decided once the stage it takes its model from has run
        return None


def _drop_if_empty(run_dir: Path) -> None:
    """A stage that failed before it recorded one example leaves no folder behind (only its
    stage.json and an empty samples.jsonl would be in it); anything more is kept to resume from."""
    samples = run_dir / "samples.jsonl"
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {"stage.json", "samples.jsonl"} \
            or (samples.exists() and samples.stat().st_size):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # the stage's folder, if no other run of it is there
    except OSError:
        pass


def _say(guard: Guard) -> None:
    color = {"warn": "yellow", "info": "cyan", "ok": "green"}[guard.level]
    console.print(f"[{color}]{guard.level}[/{color}] {guard.name}: {guard.message}")


def estimate_run(exp: Experiment) -> dict[str, Any]:
    """What a run would do, without generating (`ladder check`): examples, samples, tokens and
    cost per stage, from each stage's `plan` (every pass of calls it will make)."""
    plan = prepare(exp, planning=True)
    stages = []
    for stage in exp.stages:
        if stage.skip:
            stages.append({"stage": stage.name, "type": stage.type, "skipped": stage.skip})
            continue
        stages.append(_stage_estimate(plan, stage))
    return {"experiment": exp.config.name, "results": str(exp.results_path),
            "guards": [g.to_dict() for g in plan.guards], "stages": stages,
            "examples_ids_hash": cache_key({"ids": [e.id for e in plan.examples]})[:12],
            "subsample_n": len(plan.examples)}


def _stage_estimate(plan: PreparedRun, stage: StageConfig) -> dict[str, Any]:
    from ladder.backends.limits import rate_estimate

    exp = plan.experiment
    # A model fine-tuned on OpenAI's API (by this stage or the one it comes from) has its own prices.
    ctx = priced_as_fine_tuned(plan, stage, plan.context(plan.resolve(stage, planning=True), cache=None))
    impl = STAGES.get(stage.type)(stage)
    backend = ctx.backend
    planned = stage_hook(stage, "planned it", lambda: impl.plan(ctx), exp.source)
    if not planned.passes:  # a stage that implements only run(): no count, and a note why
        return {"stage": stage.name, "type": stage.type, "model": backend.config.name,
                "no_estimate": planned.note or "its plan lists no model call"}
    passes = [(p, p.gen or ctx.gen) for p in planned.passes]
    prompt_tokens = sum((sum(backend.count_tokens(q.messages) for q in p.prompts) + p.added_tokens * len(p.prompts))
                        * backend.prompt_copies(gen.n) for p, gen in passes)
    samples = sum(len(p.prompts) * gen.n for p, gen in passes)
    output_tokens = sum(len(p.prompts) * gen.n * gen.max_tokens for p, gen in passes)
    first, last = planned.passes[0].prompts, passes[-1]
    entry = {
        "stage": stage.name, "type": stage.type, "model": backend.config.name,
        "examples": len(first), "samples": samples, "prompt_tokens": prompt_tokens,
        "max_output_tokens": output_tokens, "cost_usd": backend.estimate_cost(prompt_tokens, output_tokens),
    }
    if len(passes) > 1:
        entry["passes"] = len(passes)
    entry.update(check_costs(backend, entry["cost_usd"]))  # standard and batch price
    if not entry["batch"] and len(passes) == 1:  # shared prefixes read from the prompt cache
        (_, pass_gen), = passes  # the pass's own sampling (a plan may set it), as the counts above
        entry.update(cached_estimate(backend, [q.messages for q in first], pass_gen.n, pass_gen.max_tokens) or {})
    entry.update(training_plan(stage, plan.task, backend.config, exp.base_dir))  # sft/rl: steps and a rough time
    entry.update(fine_tuning_cost(plan, stage, ctx))  # an OpenAI fine-tuning job: its training tokens' price
    entry.update(rate_estimate(backend.config, sum(len(p.prompts) * backend.prompt_copies(gen.n) for p, gen in passes),
                               prompt_tokens + output_tokens))  # wall time at `rate_limit:`
    # A judge (or any scorer model) is a model call of the stage too: its cost is in the total.
    scorer = stage_hook(stage, "estimated its scorer", lambda: impl.scorer_estimate(ctx, list(first)), exp.source)
    if not impl.produces_reward_model:  # a judge as the task metric (and `metrics:`) asks once per sample
        for spec in (exp.metric, *exp.extra_metrics.values()):  # of the pass the stage scores: its last
            # A sampling stage's scorer that is the metric's own judge asks, on the same samples,
            # the very questions the metric asks (then answered from the model-call cache):
            # counted once, as the scorer's. (rl's reward judges training rollouts instead.)
            repeats = scorer is not None and impl.family == "sampling" and same_scorer(impl.selects_by(stage), spec)
            if is_scorer_type(spec.type) and not repeats:
                scorer = add_estimates(scorer, estimate_scorer(spec, ctx, [q.example for q in last[0].prompts],
                                                               len(last[0].prompts) * last[1].n, last[1].max_tokens))
    for key in ("cost_usd", "cost_usd_standard", "cost_usd_batch", "cost_usd_cached"):  # the job is paid either way
        if entry.get(key) is not None:
            entry[key] += entry.get("fine_tuning", {}).get("cost_usd", 0.0)
    if not impl.produces_reward_model:  # a respondent answers every sample the metric scores (the last pass's)
        scorer = add_estimates(scorer, respondent_estimate(ctx, [q.example for q in last[0].prompts],
                                                           len(last[0].prompts) * last[1].n, last[1].max_tokens))
    if scorer is not None:
        entry["scorer"] = scorer
        entry["cost_usd"] += scorer["cost_usd"]
        # The judge's tokens are the stage's too, as a run's stats count them.
        entry["prompt_tokens"] += scorer["prompt_tokens"]
        entry["max_output_tokens"] += scorer["max_output_tokens"]
        if "cost_usd_cached" in entry:
            entry["cost_usd_cached"] += scorer["cost_usd"]
    return entry
