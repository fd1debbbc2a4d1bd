"""rl: online RL (GRPO or RLOO, with trl) on any scorer's reward — the last, most fiddly rung.

The harness makes it safe to try:
- Best-of-N first. Before training, the stage samples N = `generations` completions per test
  prompt from the starting model and keeps the best under the *same* reward (reused from the cache
  when a best_of_n stage asked the same). That is what RL's reward is worth without training, and
  the RL row is reported beside it with a paired difference on the same examples.
- Reward hacking checks on both the best-of-N pool and the RL rollouts: the correlation of reward
  with completion length, and a warning when high reward goes to degenerate samples (empty, very
  short, repeated text).
- Collapse check: a learning rate too high for the model sends the reward to zero; the stage says so.
- Curves per optimizer step — reward, KL to the starting policy, completion length — in metrics.json.
- The policy is evaluated by its greedy (top-1) answers only. Its model folder is marked as an RL
  policy, and a metric that reads its token probabilities is refused (they are not calibrated).

Start from the experiment's model or a finetuned one (`model: {from_stage: sft}`); the trained
model serves later stages the same way (`from_stage: rl`). LoRA by default.

Past one device: `launch:` trains in child processes (accelerate, torchrun) while this process
keeps the reward and serves it to them (ladder/training/remote.py), so best-of-N, the judge's
cache and costs, rollouts.jsonl and the hacking checks are the same as without it; and trl's vLLM
rollouts (`trainer_args: {use_vllm: true, vllm_mode: server | colocate}`) are checked before any
sampling (see `check_vllm`).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from ladder.backends.base import CallStats
from ladder.errors import ConfigError, LadderError
from ladder.marker import read_marker, training_finished
from ladder.estimate import rl_estimate
from ladder.metrics import Metric
from ladder.progress import console
from ladder.scorers import ScorerSpec, build_scorer, estimate_scorer, reads_targets
from ladder.stages import Prompt, Stage, StageContext, collect, local_hf, summarize
from ladder.stages.best_of_n import SCORE_BATCH, records, report, scorer_cost
from ladder.stages.rl_checks import collapse_guard, hacking, versus_best_of_n
from ladder.stages.zero_shot import zero_shot_prompts
from ladder.stats import mean_ci
from ladder.store import atomic_write, read_jsonl, write_json
from ladder.training import TrainingStageConfig, draw_train, tracking_args, trained_model
from ladder.training.launch import check_launcher
from ladder.training.lora import LoraSettings
from ladder.training.rows import TrainRow, trl_row
from ladder.types import Baseline, Guard, MetricValue, StageResult

# Keys of trl's GRPOConfig/RLOOConfig this stage sets itself.
OWNED_TRAINER_KEYS = {
    "output_dir", "learning_rate", "beta", "num_generations", "max_completion_length", "max_steps",
    "per_device_train_batch_size", "temperature", "top_p", "seed", "data_seed", "logging_steps",
    "save_strategy", "save_steps", "report_to", "disable_tqdm", "num_train_epochs",
}


class RLConfig(TrainingStageConfig):
    type: Literal["rl"] = "rl"
    algorithm: Literal["grpo", "rloo"] = "grpo"
    """grpo: trl GRPOTrainer (advantage = reward minus the mean of its prompt's group, scaled by
    the group's std); rloo: trl RLOOTrainer (leave-one-out baseline)."""
    reward: ScorerSpec = Field("metric", validate_default=True)
    """What the policy is trained to please, as best_of_n's `scorer:`: metric (the task metric on
    the train split's gold answers — a verifiable reward), {type: pm, model: ..., reference: ...},
    {type: judge, ...}, {type: classifier, ...}, {type: python, function: ...}."""
    generations: int = Field(8, ge=2, le=256)
    """Completions sampled per prompt at each step (the group the advantage is computed in); also
    the N of the best-of-N run beside it."""
    prompts_per_step: int = Field(8, ge=1)
    """Train prompts per optimizer step; a step trains on prompts_per_step × generations completions."""
    steps: int = Field(100, ge=1)
    """Optimizer steps."""
    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate. Default 2e-5 with LoRA, 1e-6 with full finetuning: RL wants far smaller
    steps than SFT, and a too-high rate collapses the reward to zero on small models (the stage
    warns when it sees that)."""
    beta: float = Field(0.04, ge=0)
    """KL coefficient: how hard the policy is held near the starting model. 0 trains fastest and
    drifts most (and then KL is not measured)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the rollouts (and of the best-of-N comparison)."""
    max_completion_length: int | None = Field(None, ge=1)
    """Longest rollout in tokens; default: the stage's generation.max_tokens."""
    method: Literal["lora", "full"] = "lora"
    """lora trains small adapters (merged afterwards, and the KL reference is the model with them
    switched off — no second copy); full trains every weight."""
    lora: LoraSettings = LoraSettings()
    """LoRA adapter settings (method: lora)."""
    best_of_n: bool = True
    """Run best-of-N with the same reward and N = generations before training (cached), and report
    RL against it. Turn off only when it was measured elsewhere."""
    seed: int | None = None
    """Seed of initialisation, data order and sampling; defaults to the experiment seed."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every this many steps (a re-run resumes from the newest); default steps / 4."""
    trainer_args: dict[str, Any] = Field(default_factory=dict)
    """More trl GRPOConfig / RLOOConfig keys, e.g. {num_iterations: 2, epsilon: 0.2,
    loss_type: dr_grpo, scale_rewards: none, warmup_steps: 5}."""
    owned_trainer_keys = OWNED_TRAINER_KEYS
    trl_configs = ("GRPOConfig", "RLOOConfig")
    own_keys = "learning_rate, beta, generations, steps, max_completion_length, report_to, ..."


    @field_validator("trainer_args")
    @classmethod
    def _vllm_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        vllm = sorted(k for k in v if k.startswith("vllm_"))
        if vllm and v.get("use_vllm") is not True:
            raise ValueError(f"{', '.join(vllm)} only appl{'ies' if len(vllm) == 1 else 'y'} with use_vllm: true "
                             f"(trl would ignore {'it' if len(vllm) == 1 else 'them'})")
        if v.get("vllm_mode", "colocate") not in ("server", "colocate"):
            raise ValueError(f"vllm_mode must be server (a `trl vllm-serve` process on GPUs of its own) or "
                             f"colocate (vLLM inside each training process), not {v['vllm_mode']!r}")
        return v


class RL(Stage):
    Config = RLConfig
    produces_model = True  # later stages use the policy with `model: {from_stage: <this stage>}`
    family = "training"
    training_estimate = staticmethod(rl_estimate)  # what `ladder check` prints: steps and a rough time
    trains_on_reward = True  # the advice holds it against best-of-N with the same reward

    @classmethod
    def reads(cls, cfg: RLConfig) -> list[str]:
        return [cls.TRAIN_SPLIT]

    @classmethod
    def selects_by(cls, config: RLConfig) -> Any:
        return config.reward  # trained on it: scored by the same judge, the row is optimistic

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        # The policy is asked exactly what zero_shot asks: what it learned is in the weights.
        return zero_shot_prompts(ctx)

    def scorer_estimate(self, ctx: StageContext, prompts: list[Prompt]) -> dict[str, Any] | None:
        """For `ladder check`: the reward's calls — the best-of-N pool on the test prompts, then
        steps × prompts_per_step × generations rollouts in training."""
        cfg: RLConfig = self.config
        calls = cfg.steps * cfg.prompts_per_step * cfg.generations
        calls += len(prompts) * cfg.generations if cfg.best_of_n else 0
        examples = ctx.task.examples("train") or [p.example for p in prompts]
        return estimate_scorer(cfg.reward, ctx, examples, calls, self.max_tokens(ctx))

    def run(self, ctx: StageContext) -> StageResult:
        cfg: RLConfig = self.config
        base = local_hf(ctx, "the rl stage")
        check_launcher(cfg.launch, f"stages.{ctx.stage.name}.launch")
        check_vllm(cfg.trainer_args, f"stages.{ctx.stage.name}.trainer_args", base.path)
        reward = build_scorer(cfg.reward, ctx, field=f"stages.{ctx.stage.name}.reward")  # fails before any sampling
        train = ctx.task.examples("train")
        if not train:
            raise ConfigError("the rl stage trains on the train split, and it is empty", field="task.data",
                              fix="give the task a train split")
        # Its prompts: the stage's train_subsample of them (steps × prompts_per_step are drawn from these).
        train, drawn, subsampled = draw_train(train, cfg, ctx.experiment.seed_for(cfg.seed),
                                              lambda ex: ex.fingerprint, "train prompts")
        prompts, _ = self.prompts(ctx)
        from ladder.scorers.pm import PMScorer, pm_guards

        # The reward's PM failing its held-out test, or one the starting policy was already trained against.
        guards: list[Guard] = pm_guards(reward, ctx, "the reward (and the best-of-N baseline's selection)",
                                        ctx.experiment.stage_model(ctx.stage).from_stage) + subsampled
        if isinstance(reward, PMScorer):
            guards.append(Guard("pm_trained_against", "warn", "the reward curve is scored by the PM this policy "
                                "was trained against, beside best-of-N lines scored by the same PM: RL optimises "
                                "against it, so the policy's PM reward overstates what it learned; compare them "
                                "on the task metric (the row's number) or a second PM or judge", 1.0))
        extra: dict[str, Any] = {}
        if cfg.best_of_n:
            bon, more = self._best_of_n(ctx, reward, prompts)
            extra["best_of_n"] = bon
            guards += more

        trained, training, more = self._train(ctx, reward, train)
        guards += more
        tctx = replace(ctx, backend=trained)
        started = time.perf_counter()
        got = collect(tctx, prompts)  # greedy answers: top-1 is what an RL policy is read by
        result = summarize(tctx, got.records, got.errors, time.perf_counter() - started, guards)
        result.stats.resumed_examples = got.resumed
        extra.update(training)
        if cfg.best_of_n:
            bon = extra["best_of_n"]
            result.guards.append(versus_best_of_n(got.records, bon))
            extra["baseline"] = Baseline(f"best-of-{bon['n']}, same reward", MetricValue.from_dict(bon["metric"]),
                                         MetricValue.from_dict(bon["diff"]) if bon["diff"] else None, bon["oracle"])
            if bon["curve"]:  # where the training reward starts (best-of-1) and what selection reaches
                extra["curves"]["rl_reward"]["hlines"] = {
                    "best-of-1 (start)": bon["curve"][0]["selector"],
                    f"best-of-{bon['n']} selected": bon["curve"][-1]["selector"]}
        # Every model call the stage made costs: the best-of-N pool and its verdicts, and the reward's
        # calls during training (a judge's, logged per rollout).
        rollout_cost = sum(r.get("cost", 0.0) for r in read_jsonl(ctx.run_dir / "rollouts.jsonl"))
        scorer_spend = rollout_cost + (extra["best_of_n"]["scorer_cost_usd"] if cfg.best_of_n else 0.0)
        result.stats.scorer_cost_usd = scorer_spend
        if cfg.best_of_n:  # counted so that a re-run retries them (the trained policy is reused)
            result.stats.errors += extra["best_of_n"]["errors"]
        result.stats.cost_usd += scorer_spend + (extra["best_of_n"]["sample_cost_usd"] if cfg.best_of_n else 0.0)
        result.guards.append(Guard("rl_probabilities", "info", "an RL policy's token probabilities are not "
                                   "calibrated: this row reports top-1 answers only, and probability "
                                   "metrics on this model are refused"))
        result.extra = replace(result.extra, **extra, train_subsample=drawn)  # declared sections
        result.stats.train_examples = len(train)
        return result

    # -- best-of-N with the same reward --------------------------------------------------------

    def _best_of_n(self, ctx: StageContext, reward: Metric, prompts: list[Prompt]) -> tuple[dict[str, Any], list[Guard]]:
        cfg: RLConfig = self.config
        gen = ctx.gen.model_copy(update={"temperature": cfg.temperature, "top_p": 1.0, "n": cfg.generations,
                                         "max_tokens": self.max_tokens(ctx)})
        sub = replace(ctx, gen=gen, calls=CallStats())  # its own counter: the stage's stats describe the policy
        console.print(f"[bold]{ctx.stage.name}[/bold] best-of-{cfg.generations} with the same reward first "
                      f"(no training)", highlight=False)
        got = collect(sub, prompts, partial(records, scorer=reward), batch=max(1, SCORE_BATCH // cfg.generations),
                      path=ctx.run_dir / "best_of_n_samples.jsonl")
        oracle = baseline_is_oracle(cfg, ctx.experiment.metric)
        curve_extra, guards = report(got.records, cfg.generations, reward, oracle=oracle)
        guards = [g for g in guards if g.name != "oracle"]  # said once, in the comparison guard
        pool = [(row["selector"], row.get("completion_tokens", 0), row["text"])
                for rec in got.records for row in rec.samples if "selector" in row]
        hack = hacking(pool, [ex.target for ex in ctx.examples], "best-of-N pool")
        guards += hack.pop("guards")
        if got.errors:  # e.g. a judge that did not answer: no fallback pick stands in for its verdict
            guards.append(Guard("baseline_errors", "warn", f"{len(got.errors)} examples of the best-of-N baseline "
                                f"failed after all retries (generation or scorer calls) and are not in its n; "
                                f"re-run to retry only those", float(len(got.errors))))
        scores = {rec.id: rec.score for rec in got.records}
        return {"n": cfg.generations, "metric": mean_ci(list(scores.values())).to_dict(), "scores": scores,
                "scorer_cost_usd": scorer_cost(got.records),
                "sample_cost_usd": sum(row.get("cost", 0.0) for rec in got.records for row in rec.samples),
                "oracle": oracle, "reward": curve_extra["selector"], "curve": curve_extra["curve"],
                "generated": sub.calls.generated, "cached": sub.calls.cached, "errors": len(got.errors),
                **hack}, guards

    def max_tokens(self, ctx: StageContext) -> int:
        return self.config.max_completion_length or ctx.gen.max_tokens

    # -- training --------------------------------------------------------------------------------

    def _train(self, ctx: StageContext, reward: Metric, train: list[Any]) -> tuple[Any, dict[str, Any], list[Guard]]:
        cfg: RLConfig = self.config
        base = ctx.backend
        model_dir = (ctx.run_dir / "model").resolve()
        rollouts = ctx.run_dir / "rollouts.jsonl"
        if training_finished(model_dir):
            console.print(f"[bold]{ctx.stage.name}[/bold] policy trained earlier ({model_dir}): evaluating it")
        else:
            spec = self.spec(ctx, base)
            keep_rollouts_until_checkpoint(ctx.run_dir)
            chat = base.uses_chat_template
            prompts = [trl_row(TrainRow(ctx.task.render(ex), ""), base, chat)["prompt"] for ex in train]
            if cfg.launch is not None:  # the ranks read the prompts from the run folder
                spec = spec.model_copy(update={"prompts_file": str(ctx.run_dir / "rl_prompts.json")})
                write_json(ctx.run_dir / "rl_prompts.json", prompts)
            write_json(ctx.run_dir / "rl_spec.json", spec.model_dump(mode="json"))

            def score(indices: Sequence[int], texts: Sequence[str]) -> tuple[list[float], list[float]]:
                scores = reward.score_batch([train[i] for i in indices], texts)
                failed = [s.error for s in scores if s.error is not None]
                if failed:  # training on a made-up reward would be worse than stopping
                    raise LadderError(f"the reward's scorer failed during RL training: {failed[0]}",
                                      field=f"stages.{ctx.stage.name}.reward",
                                      fix="re-run when the scorer's model answers again: training resumes "
                                          "from the newest checkpoint")
                return [s.value for s in scores], [s.meta.get("cost_usd", 0.0) for s in scores]

            if cfg.launch is None:
                from ladder.training.rl_local import train as rl_train

                rl_train(spec, prompts, score)
            else:
                launched(ctx, cfg.launch, spec, score)
        summary = read_marker(model_dir)
        trained = trained_model(ctx, name=str(model_dir), revision=None)
        log = summary.get("log", [])
        rows = read_jsonl(rollouts)
        late = [r for r in rows if r["step"] > summary["steps"] * 3 / 4] or rows
        hack = hacking([(r["reward"], r["tokens"], r["text"]) for r in late], [ex.target for ex in train],
                       "late RL rollouts")
        guards = hack.pop("guards") + [collapse_guard(log)]
        extra = {"model": {"backend": "hf", "name": str(model_dir)}, "policy": "rl",
                 "training": {"algorithm": cfg.algorithm, "method": cfg.method, "steps": summary["steps"],
                              "seconds": summary["seconds"], "trainable_params": summary["trainable_params"],
                              "total_params": summary["total_params"], "resumed_from": summary.get("resumed_from"),
                              "rollouts": len(rows), "late_rollouts": hack},
                 "curves": curves(log, cfg.beta)}
        return trained, extra, guards

    def spec(self, ctx: StageContext, base: Any) -> Any:
        from ladder.training.rl_local import RLSpec

        cfg: RLConfig = self.config
        seed = ctx.experiment.seed_for(cfg.seed)
        lr = cfg.learning_rate or (2e-5 if cfg.method == "lora" else 1e-6)
        trainer = {
            "learning_rate": lr, "beta": cfg.beta, "num_generations": cfg.generations,
            "max_completion_length": self.max_tokens(ctx), "max_steps": cfg.steps,
            "per_device_train_batch_size": cfg.prompts_per_step * cfg.generations,
            "temperature": cfg.temperature, "top_p": 1.0, "seed": seed, "data_seed": seed,
            "logging_steps": 1, "save_strategy": "steps", "save_steps": cfg.save_steps or max(1, cfg.steps // 4),
            "save_total_limit": 2, "disable_tqdm": True, **tracking_args(cfg.report_to, ctx.run_dir),
            **cfg.trainer_args,
        }
        if trainer.get("use_vllm") and ctx.gen.stop and isinstance(trainer.get("generation_kwargs") or {}, dict):
            # vLLM's sampling stops at the stop strings (trl passes generation_kwargs to SamplingParams), so
            # the tokens trained on end where the rewarded text ends; trl's hf generate takes no stop strings.
            trainer["generation_kwargs"] = {"stop": list(ctx.gen.stop), **(trainer.get("generation_kwargs") or {})}
        run = ctx.run_dir
        return RLSpec(model=base.config.model_dump(mode="json"), algorithm=cfg.algorithm, method=cfg.method,
                      lora=cfg.lora.peft_kwargs() if cfg.method == "lora" else None,
                      trainer=trainer, output_dir=str(run / "checkpoints"), model_dir=str((run / "model").resolve()),
                      rollouts_file=str(run / "rollouts.jsonl"), stop=list(ctx.gen.stop or []),
                      save_every_minutes=cfg.save_every_minutes)


def launched(ctx: StageContext, launch: str, spec: Any, score: Any) -> None:
    """Train under the launcher while this process serves the reward: every rank's completions are
    scored here and written to rollouts.jsonl, as in-process training does."""
    from ladder.training.launch import run_launched
    from ladder.training.remote import RewardServer
    from ladder.training.rl_local import Rollouts

    with RewardServer(Rollouts(ctx.run_dir / "rollouts.jsonl", score)) as server:
        try:
            run_launched(launch, "ladder.training.rl_local", ctx.run_dir / "rl_spec.json",
                         f"stages.{ctx.stage.name}.launch", env=server.env, serve=server.serve,
                         label=f"[bold]{ctx.stage.name}[/bold] training")
        except LadderError:
            if server.error is not None:  # the reward failed (e.g. the judge stopped answering): say that
                raise server.error from None
            raise


def check_vllm(trainer_args: dict[str, Any], field: str, model: str) -> None:
    """trl's vLLM rollouts (`use_vllm: true`), checked before any sampling or training: the vllm package
    and a CUDA GPU are there, and in server mode the server answers."""
    if not trainer_args.get("use_vllm"):
        return
    import importlib.util

    import torch

    missing = [what for what, ok in (("CUDA GPU", torch.cuda.is_available()),
                                     ("vllm package", importlib.util.find_spec("vllm") is not None)) if not ok]
    if missing:
        raise ConfigError(f"use_vllm: true samples the rollouts with vLLM, which needs a CUDA GPU and the vllm "
                          f"package; here there is no {' and no '.join(missing)}", field=field,
                          fix="run on a GPU machine with vllm installed (pip install 'trl[vllm]'), or drop "
                              "use_vllm to sample the rollouts with transformers (slower)")
    if trainer_args.get("vllm_mode", "colocate") == "server":
        probe_vllm_server(trainer_args, field, model)


def probe_vllm_server(trainer_args: dict[str, Any], field: str, model: str, timeout: float = 5.0) -> None:
    """GET <server>/health/ — the URL trl's VLLMClient checks — so a server that is not up is one
    clear error now, not a trainer traceback after the best-of-N run."""
    import urllib.error
    import urllib.request

    base = trainer_args.get("vllm_server_base_url") or \
        f"http://{trainer_args.get('vllm_server_host', '0.0.0.0')}:{trainer_args.get('vllm_server_port', 8000)}"
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/health/", timeout=timeout) as r:
            if r.status == 200:
                return
            why = f"it answered HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        why = f"it answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        why = str(getattr(exc, "reason", exc))
    raise ConfigError(f"the vLLM server at {base} does not answer ({why})", field=field,
                      fix=f"start it first on GPUs the training does not use, e.g. `CUDA_VISIBLE_DEVICES=7 trl "
                          f"vllm-serve --model {model} --port {trainer_args.get('vllm_server_port', 8000)}`, "
                          f"or set vllm_server_base_url / vllm_server_host and vllm_server_port to where it runs")


def keep_rollouts_until_checkpoint(run_dir: Any) -> None:
    """A resumed run repeats the steps after its newest checkpoint: drop their earlier rollouts."""
    from ladder.training.sft_local import last_checkpoint

    path = run_dir / "rollouts.jsonl"
    if not path.exists():
        return
    ckpt = last_checkpoint(run_dir / "checkpoints")
    done = int(ckpt.name.split("-")[-1]) if ckpt else 0
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in read_jsonl(path, repair=True) if r["step"] <= done))


def baseline_is_oracle(cfg: RLConfig, metric: Any) -> bool:
    """Whether best-of-N with rl's reward on the test prompts picks by their gold answers (an upper
    bound). `reward: metric` on a task with no gold answer (a judged or red-teaming task) reads none:
    that row is selected by the metric, not an oracle — the rule `ladder run` applies to best_of_n."""
    from ladder.metrics.judged import selected_by_metric

    return reads_targets(cfg.reward) and not selected_by_metric(cfg, metric)


def curves(log: Sequence[dict[str, float]], beta: float) -> dict[str, Any]:
    """Per-step training curves in the shape `ladder report` draws."""
    steps = [p["step"] for p in log]

    def series(key: str) -> list[float | None]:
        return [p.get(key) for p in log]

    out = {
        "rl_reward": {"x": steps, "y": {"reward (mean over rollouts)": series("reward")},
                      "xlabel": "step", "ylabel": "reward"},
        "rl_length": {"x": steps, "y": {"completion tokens (mean)": series("length")},
                      "xlabel": "step", "ylabel": "tokens"},
    }
    if beta > 0:
        out["rl_kl"] = {"x": steps, "y": {"KL to the starting policy": series("kl")}, "xlabel": "step",
                        "ylabel": "KL (nats/token)"}
    return out
