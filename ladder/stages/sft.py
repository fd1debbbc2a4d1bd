"""sft: supervised finetuning on the task's own prompts, then the finetuned model takes the same test.

Data: the train split, each example rendered exactly as the prompting stages render it (the prompt
is `task.render(ex)`, the completion is the target; loss on the completion only), or `data:` a
JSONL file of {"prompt": [messages], "completion": [assistant message]} rows — what best_of_n
exports — or of OpenAI-style {"messages": [...]} rows ending on the assistant's answer.

Two routes:
  local    trl SFTTrainer on an hf model, LoRA (peft) by default or all weights (`method: full`).
           Checkpoints in the run folder, resumed after an interruption; the test loss, the task
           metric and the loss over the answer choices are measured at step 0 and at every
           evaluation (the curves); the final model is saved with LoRA merged in, so the hf backend
           (and any later stage, via `model: {from_stage: sft}`) loads it as a plain model folder.
           The curves cost little beyond training: step 0's answers come through the cache (what
           zero_shot already asked the same model), the final point's from the stage's own final
           evaluation, and a large test subsample is measured on a seeded draw of it
           (`curve_examples`).
  openai   the fine-tuning API: upload the chat JSONL, create a job, poll it (a re-run polls the
           recorded job instead of starting another), then evaluate the fine-tuned model.
The route follows the experiment's model (openai → openai, hf → local) unless `route:` says.

Guards: the loss over the answer choices must end clearly below chance, −log(1/K), and below the
label distribution's entropy (what learning only the labels' shares reaches) — it can disagree with
accuracy, so both are reported — and the finetuned model's greedy samples must end on EOS or a
stop rather than run into max_tokens — a model that never learned to stop wastes every token after
its answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Annotated, Any, Literal, Sequence

from pydantic import Field, model_validator

from ladder.backends.base import Backend
from ladder.config import FromStageOutputs
from ladder.errors import ConfigError, DataError
from ladder.estimate import sft_estimate
from ladder.guards import seeded_draw
from ladder.marker import read_marker, training_finished
from ladder.progress import console
from ladder.stages import Prompt, Stage, StageContext, evaluate
from ladder.stages.sft_curves import curve_point, curve_seed, curve_specs, greedy, prompts_of
from ladder.stages.sft_guards import chance_guard, termination_guard
from ladder.stages.zero_shot import zero_shot_prompts
from ladder.store import write_json
from ladder.training import TrainingStageConfig, draw_train, tracking_args, trained_model
from ladder.training.lora import LoraSettings
from ladder.training.rows import TrainRow, read_sft_file, template_guards, trl_row
from ladder.types import Example, Guard, Message, StageResult

# Keys of trl's SFTConfig that this stage sets itself: `trainer_args` may not repeat them.
OWNED_TRAINER_KEYS = {
    "output_dir", "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "num_train_epochs", "max_steps", "seed", "data_seed", "eval_strategy",
    "eval_steps", "save_strategy", "save_steps", "logging_steps", "max_length", "gradient_checkpointing",
    "activation_checkpointing", "completion_only_loss", "report_to", "disable_tqdm",
}

CURVE_EXAMPLES = 100
"""Default number of test examples a curve point measures when the test subsample is larger:
each point costs a test-loss pass, greedy samples and a pass over the answer choices on them. With
100 the quickstart's sft stage takes 1.15× raw trl's time, with all 300 1.53× (docs/benchmarks.md)."""


class SFTConfig(TrainingStageConfig):
    type: Literal["sft"] = "sft"
    route: Literal["auto", "local", "openai"] = "auto"
    """local: trl on an hf model; openai: the fine-tuning API; auto: openai when the stage's model
    backend is openai, else local."""
    data: str | None = None
    """A JSONL file of prompt/completion rows (e.g. best_of_n's sft.jsonl; relative to the YAML
    file) to train on instead of the task's train split."""
    train_from: FromStageOutputs | None = None
    """Train on an earlier stage's successes instead of the train split: {stage: best_of_n,
    min_score: 1} — its SFT export when it wrote one, else its outputs that scored at least
    min_score (on the test examples: flagged). See docs/redteam.md."""
    completion_field: str | None = None
    """Train split column holding each example's completion, instead of the target: how an
    open-ended task (no task.target) trains without `data:`."""
    method: Literal["lora", "full"] = "lora"
    """local: lora trains small adapters (merged into the model afterwards); full trains every weight."""
    lora: LoraSettings = LoraSettings()
    """LoRA adapter settings (method: lora)."""
    learning_rate: float | None = Field(None, ge=0.0)
    """local: peak AdamW learning rate, decayed linearly to 0. Default 5e-3 with LoRA, 1e-3 with full
    finetuning: right for models of a few million weights like ladder-tiny, far too high for
    billion-weight ones (use about 2e-4 with LoRA, 1e-5 full there)."""
    learning_rate_multiplier: float | Literal["auto"] = "auto"
    """openai: scale of OpenAI's own learning rate."""
    batch_size: int | None = Field(None, ge=1)
    """Examples per optimizer step (per device, local). Default 16 locally, 'auto' on openai."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the training data. Default 1 locally — the cheap first look; when the test curves
    still improve at the end, train longer — and 'auto' on openai (whole numbers there)."""
    max_steps: int | None = Field(None, ge=1)
    """local: stop after this many optimizer steps (overrides epochs)."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """local: micro-batches per optimizer step; the effective batch is batch_size × this × devices."""
    seed: int | None = None
    """Seed of initialisation and data order; defaults to the experiment seed."""
    eval_steps: int | None = Field(None, ge=1)
    """local: measure test loss and metric every this many steps (and at step 0 and the end);
    default: 4 times over the run."""
    save_steps: int | None = Field(None, ge=1)
    """local: checkpoint every this many steps (the newest two are kept); default: eval_steps."""
    curves: bool = True
    """local: measure the curves at all. Each point generates on `curve_examples` test examples;
    step 0's answers come through the cache and the final point is the stage's final evaluation."""
    curve_examples: Annotated[int, Field(ge=1)] | Literal["all"] | None = None
    """local: how many of the test subsample each curve point measures: a random draw seeded by the
    experiment seed, kept in the subsample's order, named in the curves' legend (e.g. "choice (100
    of 300 test examples)"); `all`: the whole subsample. Default: 100, or all of them when the
    subsample is smaller. A share measured on 100 examples is only good to about ±0.1 (95% CI):
    enough for the trend; the stage's own number is always measured on the whole subsample."""
    max_length: int = Field(1024, ge=8)
    """local: longest training sequence in tokens (prompt + completion); longer ones are cut."""
    gradient_checkpointing: bool = False
    """local: recompute activations in the backward pass — less memory, about 20% slower."""
    trainer_args: dict[str, Any] = Field(default_factory=dict)
    """local: more trl SFTConfig / transformers TrainingArguments keys, e.g. {warmup_steps: 10,
    weight_decay: 0.01, lr_scheduler_type: cosine, deepspeed: ds.json}."""
    owned_trainer_keys = OWNED_TRAINER_KEYS
    trl_configs = ("SFTConfig",)
    own_keys = "learning_rate, batch_size, epochs, max_steps, eval_steps, save_steps, max_length, report_to, ..."
    suffix: str | None = Field(None, max_length=64)
    """openai: text put into the fine-tuned model's name."""
    poll_interval: float = Field(15.0, gt=0)
    """openai: seconds between two looks at the job's status."""


    @model_validator(mode="after")
    def _route_keys(self) -> SFTConfig:
        if self.route == "openai":
            self.check_openai()
        elif self.route == "local" and self.learning_rate_multiplier != "auto":
            raise ValueError("learning_rate_multiplier is for the openai route; locally set learning_rate")
        return self

    def check_openai(self) -> None:
        """Keys of the local route make no sense on openai: say so instead of ignoring them."""
        local = [k for k in ("learning_rate", "max_steps", "eval_steps", "save_steps", "curve_examples", "launch")
                 if getattr(self, k) is not None] + (["method: full"] if self.method != "lora" else []) \
            + (["report_to"] if self.report_to else [])
        if local:
            raise ValueError(f"{', '.join(local)} only apply to the local route; on openai use "
                             f"epochs, batch_size and learning_rate_multiplier")
        if self.epochs is not None and self.epochs != int(self.epochs):
            raise ValueError("the OpenAI API takes whole epochs")


class SFT(Stage):
    Config = SFTConfig
    produces_model = True  # later stages use it with `model: {from_stage: <this stage>}`
    family = "training"
    training_estimate = staticmethod(sft_estimate)  # what `ladder check` prints: steps and a rough time

    @classmethod
    def reads(cls, cfg: SFTConfig) -> list[str]:
        if cfg.train_from is not None:  # the earlier stage's run id is in the run id
            return []
        return [cfg.data] if cfg.data else [cls.TRAIN_SPLIT]

    @staticmethod
    def check_inputs(cfg: SFTConfig, task) -> None:
        """Called by the runner before anything is written. A `data:` file may be written by an
        earlier stage of this run (best_of_n's export), so only the train split is checked here."""
        if cfg.data is None and cfg.train_from is None:
            train = task.examples("train")
            if cfg.completion_field is None and getattr(task, "open_ended", False):
                raise ConfigError("the task is open-ended (no task.target), so its train split has no answers "
                                  "for sft to train on", field=f"stages.{cfg.name}.data",
                                  fix="train on best_of_n's export (export: true there, then data: "
                                      "results/<exp>/<best_of_n>/<run_id>/sft.jsonl), or name the train "
                                      "column holding good replies with completion_field: <column>")
            if cfg.completion_field is not None:
                missing = next((ex.id for ex in train if ex.fields.get(cfg.completion_field) is None), None)
                if missing is not None:
                    raise ConfigError(f"train example {missing} has no '{cfg.completion_field}'",
                                      field=f"stages.{cfg.name}.completion_field",
                                      fix="name a column every train row fills in")

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        # The finetuned model is asked exactly what zero_shot asks: what it learned is in the weights.
        return zero_shot_prompts(ctx)

    @classmethod
    def fine_tunes_through_api(cls, cfg: SFTConfig, model: Any) -> bool:
        if cfg.route != "auto":
            return cfg.route == "openai"
        from ladder.backends.openai import OpenAIBackend
        from ladder.registry import BACKENDS

        # By class, not by name: a backend built on OpenAIBackend has its fine-tuning API too.
        return issubclass(BACKENDS.get(model.backend), OpenAIBackend)

    def route(self, ctx: StageContext) -> str:
        return "openai" if self.fine_tunes_through_api(self.config, ctx.backend.config) else "local"

    def run(self, ctx: StageContext) -> StageResult:
        if self.config.curves and (ctx.metric.batched or getattr(ctx.task, "open_ended", False)):
            # The curves' test loss needs gold answers and their metric runs in the trainer's process,
            # which has no judge: a judged task is measured once, at the end, by the metric itself.
            self.config = self.config.model_copy(update={"curves": False})
        rows, drawn, guards = drawn_rows(ctx, self.config)
        local = self.route(ctx) == "local"
        if not local:
            from ladder.training.sft_openai import finetune

            try:
                self.config.check_openai()  # route: auto came out as openai
            except ValueError as exc:
                raise ConfigError(str(exc), field=f"stages.{ctx.stage.name}",
                                  fix="drop those keys, or train an hf model locally") from None
            trained, extra = finetune(ctx, self.config, rows)
        else:
            trained, extra, more = self._local(ctx, rows)
            guards += more
        tctx = replace(ctx, backend=trained)
        prompts, _ = self.prompts(tctx)
        result = evaluate(tctx, prompts, guards)
        chance, info = chance_guard(tctx, prompts)
        result.guards += [chance, termination_guard(tctx, prompts)]
        if local:  # after the final evaluation and the guards: the curve's last point reuses their answers
            extra["curves"] = self.curves(tctx, prompts)
        # The route's sections (model, training, curves; openai) are declared sections of Extra.
        result.extra = replace(result.extra, **extra, train_subsample=drawn)
        if info:
            result.extra.choice_loss = info
        result.stats.train_examples = len(rows)
        return result

    # -- local route ------------------------------------------------------------------------------

    def _local(self, ctx: StageContext, rows: list[TrainRow]) -> tuple[Backend, dict[str, Any], list[Guard]]:
        from ladder.backends.hf import HFBackend

        cfg: SFTConfig = self.config
        base = ctx.backend
        if not isinstance(base, HFBackend):
            raise ConfigError(f"the local sft route trains hf models, not '{base.config.backend}'",
                              field=f"stages.{ctx.stage.name}.route",
                              fix="use route: openai for OpenAI models, or an hf model")
        if cfg.learning_rate_multiplier != "auto":
            raise ConfigError("learning_rate_multiplier is for the openai route", field=f"stages.{ctx.stage.name}",
                              fix="set learning_rate for local training")
        guards = template_guards(base, rows[0])
        model_dir = (ctx.run_dir / "model").resolve()
        if training_finished(model_dir):
            console.print(f"[bold]{ctx.stage.name}[/bold] model trained earlier ({model_dir}): evaluating it")
        else:
            spec = self.train_spec(ctx, rows, base)
            self.train(ctx, spec)
        summary = read_marker(model_dir)
        trained = trained_model(ctx, name=str(model_dir), revision=None)
        extra = {"model": {"backend": "hf", "name": str(model_dir)},
                 "training": {"route": "local", "method": cfg.method, "train_examples": len(rows),
                              **{k: v for k, v in summary.items() if k != "train_loss"}}}
        if cfg.curves:
            extra["training"]["curve_examples"] = {"n": len(curve_examples(ctx, cfg)), "of": len(ctx.examples),
                                                   "seed": curve_seed(ctx)}
        if summary.get("resumed_from"):
            guards.append(Guard("resumed", "info", f"training resumed from {summary['resumed_from']}"))
        return trained, extra, guards

    def curves(self, tctx: StageContext, prompts: Sequence[Prompt]) -> dict[str, Any]:
        """The curves of a local run, once the trained model (`tctx.backend`) has been evaluated:
        the trainer wrote every point's test loss and the generated part of all but the last; the
        last point's metric, stop rate and choice loss are the final evaluation's, read back through
        the cache (a re-run of a model trained earlier gets the same complete curve)."""
        from ladder.training.sft_local import read_curves

        cfg: SFTConfig = self.config
        summary = read_marker((tctx.run_dir / "model").resolve())
        points = read_curves(tctx.run_dir / "curves.jsonl") if cfg.curves else []
        examples = curve_examples(tctx, cfg)
        if points:
            steps = summary.get("steps", points[-1]["step"])
            last = next((p for p in points if p["step"] == steps), None)
            if last is None:  # no evaluation at the last step was recorded: the loss is unknown
                last = {"step": steps, "epoch": summary.get("epochs"), "test_loss": None}
                points.append(last)
            last.update(curve_point(tctx, prompts_of(prompts, examples)))
        return curve_specs(points, summary.get("train_loss", []), tctx.metric.name, examples, len(tctx.examples))

    def train_spec(self, ctx: StageContext, rows: list[TrainRow], base: Any) -> Any:
        """Write the data files and the TrainSpec into the run folder."""
        from ladder.store import atomic_write
        from ladder.training.sft_local import CurveSpec, TrainSpec

        cfg: SFTConfig = self.config
        run = ctx.run_dir
        chat = base.uses_chat_template
        atomic_write(run / "train.jsonl", "".join(json.dumps(trl_row(r, base, chat)) + "\n" for r in rows))
        examples = curve_examples(ctx, cfg)
        curve = None
        if cfg.curves:
            prompts = prompts_of(self.prompts(ctx)[0], examples)
            test = [TrainRow(p.messages, p.example.target) for p in prompts]
            atomic_write(run / "eval.jsonl", "".join(json.dumps(trl_row(r, base, chat)) + "\n" for r in test))
            # Step 0 is the base model: its answers are what zero_shot asked it (greedy, same
            # prompts), so they come from the cache; whatever is missing is generated once, here.
            loaded = getattr(base, "_model", None) is not None
            step0 = curve_point(ctx, prompts)
            if not loaded:  # the trainer loads its own copy: do not hold a second one while it trains
                base._model = None
            curve = CurveSpec(
                examples=[{"id": ex.id, "fields": ex.fields, "target": ex.target, "choices": ex.choices}
                          for ex in examples],
                prompts=[[m.to_dict() for m in r.prompt] for r in test],
                metric=ctx.experiment.metric.model_dump(mode="json"),
                generation=greedy(ctx.gen).model_dump(mode="json"), step0=step0)

        batch = cfg.batch_size or 16
        epochs = cfg.epochs or 1.0
        per_epoch = math.ceil(len(rows) / (batch * cfg.gradient_accumulation_steps))
        total = cfg.max_steps or max(1, math.ceil(per_epoch * epochs))
        eval_steps = cfg.eval_steps or max(1, math.ceil(total / 4))
        lr = cfg.learning_rate if cfg.learning_rate is not None else (5e-3 if cfg.method == "lora" else 1e-3)
        seed = ctx.experiment.seed_for(cfg.seed)
        trainer = {
            "learning_rate": lr, "per_device_train_batch_size": batch, "per_device_eval_batch_size": batch,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "num_train_epochs": epochs,
            "max_steps": cfg.max_steps or -1, "seed": seed, "data_seed": seed,
            "eval_strategy": "steps" if curve else "no", "eval_steps": eval_steps,
            "save_strategy": "steps", "save_steps": cfg.save_steps or eval_steps, "save_total_limit": 2,
            "logging_steps": max(1, total // 25), "gradient_checkpointing": cfg.gradient_checkpointing,
            # Never past the model's context window: positions beyond it were never trained.
            "max_length": min(cfg.max_length, base.context_window),
            # Loss on the answer only: the prompt is given at test time, not something to learn.
            "completion_only_loss": True, "disable_tqdm": True, **tracking_args(cfg.report_to, run),
            **cfg.trainer_args,
        }
        spec = TrainSpec(
            model=base.config.model_dump(mode="json"), train_file=str(run / "train.jsonl"),
            eval_file=str(run / "eval.jsonl") if curve else None, output_dir=str(run / "checkpoints"),
            model_dir=str((run / "model").resolve()), curves_file=str(run / "curves.jsonl"),
            method=cfg.method, trainer=trainer, curve=curve,
            lora=cfg.lora.peft_kwargs() if cfg.method == "lora" else None,
            save_every_minutes=cfg.save_every_minutes)
        write_json(run / "train_spec.json", spec.model_dump(mode="json"))
        return spec

    def train(self, ctx: StageContext, spec: Any) -> None:
        cfg: SFTConfig = self.config
        if cfg.launch is None:
            from ladder.training.sft_local import train

            train(spec)
            return
        from ladder.training.launch import run_launched

        run_launched(cfg.launch, "ladder.training.sft_local", ctx.run_dir / "train_spec.json",
                     f"stages.{ctx.stage.name}.launch", label=f"[bold]{ctx.stage.name}[/bold] training")


def curve_examples(ctx: StageContext, cfg: SFTConfig) -> list[Example]:
    """The test examples the training curves are measured on: `curve_examples` of the subsample
    (default CURVE_EXAMPLES), a seeded random draw kept in the subsample's order."""
    return seeded_draw(ctx.examples, cfg.curve_examples or CURVE_EXAMPLES, curve_seed(ctx))


# -- data --------------------------------------------------------------------------------------


def training_rows(ctx: StageContext, cfg: SFTConfig) -> tuple[list[TrainRow], list[Guard]]:
    """The supervised examples (the stage's `train_subsample` of them), and guards: rows left out by
    the subsample, any of them a test prompt."""
    rows, _, guards = drawn_rows(ctx, cfg)
    return rows, guards


def drawn_rows(ctx: StageContext, cfg: SFTConfig) -> tuple[list[TrainRow], dict[str, Any], list[Guard]]:
    """training_rows, plus the record of the `train_subsample` draw (for metrics.json and the manifest)."""
    seed = ctx.experiment.seed_for(cfg.seed)
    if cfg.train_from is not None:  # an earlier stage's successes (ladder/earlier.py)
        from ladder.earlier import training_rows as earlier_rows

        rows = earlier_rows(ctx.earlier[cfg.train_from.stage], cfg.train_from, ctx.stage.name)
        rows, drawn, guards = draw_train(rows, cfg, seed, lambda r: [_key(r.prompt), r.completion], "training rows")
    elif cfg.data:
        rows = read_sft_file(ctx.experiment.path(cfg.data), field=f"stages.{ctx.stage.name}.data")
        rows, drawn, guards = draw_train(rows, cfg, seed, lambda r: [_key(r.prompt), r.completion], "training rows")
    else:
        examples, drawn, guards = draw_train(ctx.task.examples("train"), cfg, seed, lambda ex: ex.fingerprint)
        rows = [TrainRow(ctx.task.render(ex), ex.target if cfg.completion_field is None
                         else str(ex.fields[cfg.completion_field])) for ex in examples]
    if not rows:
        raise DataError("no training examples", field=f"stages.{ctx.stage.name}.data",
                        fix="give the task a non-empty train split, or point data: at a file with rows")
    test = {_key(ctx.task.render(ex)) for ex in ctx.examples}
    leaked = sum(_key(r.prompt) in test for r in rows)
    if leaked:
        guards.append(Guard("train_test_overlap", "warn",
                            f"{leaked} training prompts are also test prompts: the test score overstates what "
                            f"the model learned; train on the train split only", float(leaked)))
    return rows, drawn, guards


def _key(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_dict() for m in messages])
