"""Experiment → stages in order, with resume.

Everything that can fail on bad input (data, fields, metric, model names) is checked in
`prepare()` before the first byte is written under results/. Each stage's folder is named by a
hash of everything that determines its output, so the same config lands in the same folder and a
finished stage (metrics.json present) is not run again.
"""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import yaml

from ladder.backends.base import Backend, BackendPool
from ladder.cache import Cache, cache_key
from ladder.config import Experiment, StageConfig
from ladder.guards import subsample
from ladder.metrics import Metric, build_metric
from ladder.progress import console
from ladder.registry import STAGES
from ladder.stages import StageContext
from ladder.store import ExperimentLock, atomic_write, read_json, write_json
from ladder.table import write_summary
from ladder.tasks import TaskLike, load_task
from ladder.types import Example, Guard, StageResult


@dataclass
class Plan:
    experiment: Experiment
    task: TaskLike
    examples: list[Example]
    guards: list[Guard]
    metric: Metric
    pool: BackendPool

    def backend(self, stage: StageConfig) -> Backend:
        return self.pool.get(self.experiment.stage_model(stage))

    def run_id(self, stage: StageConfig) -> str:
        exp = self.experiment
        payload = {
            "stage": stage.model_dump(mode="json"),
            "model": self.backend(stage).fingerprint,
            "model_config": exp.stage_model(stage).model_dump(mode="json"),
            "generation": exp.stage_generation(stage).model_dump(mode="json"),
            "task": exp.config.task.model_dump(mode="json"),
            "metric": exp.metric.model_dump(mode="json"),
            "examples": [ex.id for ex in self.examples],
        }
        return cache_key(payload)[:12]

    def context(self, stage: StageConfig, cache: Cache | None, run_dir, run_id: str) -> StageContext:
        exp = self.experiment
        return StageContext(experiment=exp, stage=stage, task=self.task, examples=self.examples,
                            metric=self.metric, backend=self.backend(stage),
                            gen=exp.stage_generation(stage), cache=cache, run_dir=run_dir, run_id=run_id)


def prepare(exp: Experiment) -> Plan:
    cfg = exp.config
    where = str(exp.source) if exp.source else "<config>"
    task = load_task(cfg.task, exp.base_dir, cfg.seed, where)
    seed = cfg.seed if cfg.subsample.seed is None else cfg.subsample.seed
    examples, guards = subsample(task.examples("test"), cfg.subsample.n, seed, cfg.guards)
    metric = build_metric(exp.metric)
    pool = BackendPool()
    for stage in exp.stages:
        pool.get(exp.stage_model(stage)).preflight()
    return Plan(exp, task, examples, guards, metric, pool)


def run_experiment(exp: Experiment, only: list[str] | None = None) -> list[StageResult]:
    plan = prepare(exp)
    folder = exp.results_path
    stages = [s for s in exp.stages if not only or s.name in only]
    with ExperimentLock(folder):
        atomic_write(folder / "experiment.yaml", yaml.safe_dump(exp.resolved(), sort_keys=False))
        write_json(folder / "manifest.json", manifest(plan))
        for guard in plan.guards:
            _say(guard)
        cache = Cache(exp.config.cache_dir)
        results: list[StageResult] = []
        try:
            for stage in stages:
                results.append(run_stage(plan, stage, cache))
                write_summary(folder, _with_earlier(folder, plan, results, only))
        finally:
            cache.close()
            plan.pool.close()
    return results


def run_stage(plan: Plan, stage: StageConfig, cache: Cache) -> StageResult:
    exp = plan.experiment
    run_id = plan.run_id(stage)
    run_dir = exp.results_path / stage.name / run_id
    done = run_dir / "metrics.json"
    if done.exists():
        result = StageResult.from_dict(read_json(done))
        console.print(f"[bold]{stage.name}[/bold] done earlier ({done}): 0 new generations")
        return result
    impl = STAGES.get(stage.type)(stage)
    ctx = plan.context(stage, cache, run_dir, run_id)
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "stage.json", {"stage": stage.model_dump(mode="json"),
                                        "model": exp.stage_model(stage).model_dump(mode="json"),
                                        "generation": ctx.gen.model_dump(mode="json")})
    result = impl.run(ctx)
    result.stats["seconds"] = round(time.perf_counter() - started, 3)
    result.guards = [*plan.guards, *result.guards]
    write_json(done, result.to_dict())  # last and atomic: its presence means "done"
    m = result.metric
    resumed = result.stats.get("resumed_examples", 0)
    console.print(f"[bold]{stage.name}[/bold] {result.metric_name} = {m.value:.3f} "
                  f"[{m.ci_low:.3f}, {m.ci_high:.3f}] n={m.n} · {ctx.calls.generated} generated, "
                  f"{ctx.calls.cached} from cache" + (f", {resumed} examples resumed from samples.jsonl"
                                                      if resumed else "")
                  + f" · {result.stats['seconds']:.1f} s", highlight=False)
    for guard in result.guards:
        if guard.level == "warn" and guard.name != "subsample":
            _say(guard)
    return result


def _with_earlier(folder, plan: Plan, results: list[StageResult], only: list[str] | None) -> list[StageResult]:
    """With --only, keep the other stages' finished rows in the table instead of dropping them."""
    if not only:
        return results
    by_name = {r.stage: r for r in results}
    out = []
    for stage in plan.experiment.stages:
        if stage.name in by_name:
            out.append(by_name[stage.name])
        else:
            path = folder / stage.name / plan.run_id(stage) / "metrics.json"
            if path.exists():
                out.append(StageResult.from_dict(read_json(path)))
    return out


def _say(guard: Guard) -> None:
    color = {"warn": "yellow", "info": "cyan", "ok": "green"}[guard.level]
    console.print(f"[{color}]{guard.level}[/{color}] {guard.name}: {guard.message}")


def manifest(plan: Plan) -> dict[str, Any]:
    exp = plan.experiment
    versions = {}
    for pkg in ("ladder", "torch", "transformers", "datasets", "peft", "trl", "openai", "anthropic"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=exp.base_dir).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    cfg = exp.config
    return {
        "experiment": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "versions": versions,
        "git_sha": sha,
        "seed": cfg.seed,
        "subsample": {"n": len(plan.examples), "seed": cfg.seed if cfg.subsample.seed is None
                      else cfg.subsample.seed, "ids": [ex.id for ex in plan.examples]},
        "stages": [{"name": s.name, "type": s.type, "run_id": plan.run_id(s)} for s in exp.stages],
    }


def check(exp: Experiment) -> dict[str, Any]:
    """What a run would do, without generating: examples, samples and tokens per stage."""
    plan = prepare(exp)
    stages = []
    for stage in exp.stages:
        ctx = plan.context(stage, cache=None, run_dir=None, run_id="")
        prompts, _ = STAGES.get(stage.type)(stage).prompts(ctx)
        backend, gen = ctx.backend, ctx.gen
        prompt_tokens = sum(backend.count_tokens(p.messages) for p in prompts) * gen.n
        samples = len(prompts) * gen.n
        stages.append({
            "stage": stage.name, "type": stage.type, "model": backend.config.name,
            "examples": len(prompts), "samples": samples, "prompt_tokens": prompt_tokens,
            "max_output_tokens": samples * gen.max_tokens,
            "cost_usd": backend.estimate_cost(prompt_tokens, samples * gen.max_tokens),
        })
    return {"experiment": exp.config.name, "results": str(exp.results_path),
            "guards": [g.to_dict() for g in plan.guards], "stages": stages,
            "examples_ids_hash": cache_key({"ids": [e.id for e in plan.examples]})[:12]}
