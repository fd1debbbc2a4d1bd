"""Local supervised finetuning with trl's SFTTrainer: the trainer half of the sft stage.

The stage (ladder/stages/sft.py) writes the training data and a TrainSpec into its run folder and
calls `train(spec)` in its own process, or runs this module under a launcher for more than one GPU:

    accelerate launch --config_file fsdp.yaml -m ladder.training.sft_local <run_dir>/train_spec.json

Nothing here moves a tensor to a device or wraps the model: trl/transformers and accelerate place
it, so the same code runs on a CPU, one GPU, or many (DDP, DeepSpeed, FSDP). Only the main process
writes files.

What lands in the run folder:
  checkpoints/checkpoint-N/    trainer state, every save_steps and every save_every_minutes; an
                               interrupted run resumes from the newest complete one
  curves.jsonl                 one line per evaluation (step 0 included): test loss, task metric,
                               loss over the answer choices, share of samples that stopped. Step
                               0's generated part is the stage's (`CurveSpec.step0`, through its
                               cache); the last line has the test loss only: the stage measures the
                               rest on the final model in its own evaluation
  model/                       the final model (LoRA merged in) with its tokenizer: a plain
                               AutoModelForCausalLM folder the hf backend loads like any other
  model/ladder_training.json   written last: its presence means training finished
"""

from __future__ import annotations

import sys
import warnings
import time
from pathlib import Path
from typing import Any, Callable, Sequence

# Importing this module means training is about to start, so transformers comes in at the top
# (the callbacks subclass its TrainerCallback); the stage imports this module only when it trains.
from transformers import TrainerCallback

from ladder.backends.hf import HFBackend, HFConfig
from ladder.config import GenerationConfig, Section
from ladder.marker import write_marker
from ladder.store import JsonlWriter, read_json, read_jsonl
from ladder.training import JobSpec, hardware_args, load_base, peft_config
from ladder.training.choices import choice_loss, choice_queries
from ladder.training.timed_save import timed_save
from ladder.types import Example, Message, Sample


class CurveSpec(Section):
    """What the evaluation callback needs to score the model while it trains."""

    examples: list[dict[str, Any]]
    """The test examples (Example fields) scored at each evaluation."""
    prompts: list[list[dict[str, str]]]
    """Their prompt messages, as the prompting stages render them."""
    metric: dict[str, Any]
    """The task metric's config (type + options)."""
    generation: dict[str, Any]
    """Generation settings of the curve's greedy samples."""
    step0: dict[str, Any] | None = None
    """The base model's metric, stop rate and choice loss on these examples, measured by the stage
    through its cache (zero_shot's answers); None: measured here at step 0 like any other point."""


class TrainSpec(JobSpec):
    """An sft run's job: the common fields, and the data, the curve's file and what it scores."""

    train_file: str
    """JSONL of trl prompt/completion rows."""
    eval_file: str | None = None
    """JSONL of the test rows whose loss is the curve's test loss."""
    curves_file: str
    """One JSON line per evaluation point."""
    curve: CurveSpec | None = None
    """Score the model on the test examples at each evaluation; None: test loss only."""


def train(spec: TrainSpec, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train (resuming from the newest checkpoint), save the merged model, return the summary that
    is also written to model/ladder_training.json. `callbacks`: extra transformers TrainerCallbacks."""
    import datasets
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    datasets.disable_progress_bars()  # trl's tokenizing passes take a blink; their bars are noise
    base, path, tokenizer = load_base(spec.model)

    args = dict(spec.trainer)
    dtype = hardware_args(args, base, SFTConfig)
    config = SFTConfig(output_dir=spec.output_dir, **args)

    lora = peft_config(spec)

    curve = CurveCallback(spec, base) if spec.curve else None
    trainer = SFTTrainer(
        model=path, args=config, processing_class=tokenizer, peft_config=lora,
        train_dataset=Dataset.from_list(read_jsonl(Path(spec.train_file))),
        eval_dataset=Dataset.from_list(read_jsonl(Path(spec.eval_file))) if spec.eval_file else None,
        callbacks=[c for c in (curve, TrainingProgress()) if c] + timed_save(spec.save_every_minutes) + list(callbacks))
    # Our own bar (rich, with the loss) replaces transformers' tqdm bar and its raw log printing.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if curve:
        curve.trainer = trainer

    resume = last_checkpoint(Path(spec.output_dir))
    if curve and resume is None:
        trainer.evaluate()  # step 0: the base model's test loss and metric, before any update
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if curve and curve.last_step != trainer.state.global_step:
        curve.final = True
        trainer.evaluate()  # the curve ends on the final weights, whatever eval_steps was

    summary = _summary(trainer, resume, time.perf_counter() - started)
    save_model(trainer, spec, tokenizer, dtype)
    if trainer.is_world_process_zero():
        write_marker(spec.model_dir, summary)  # last: marks training as finished
    trainer.accelerator.wait_for_everyone()
    return summary


def save_model(trainer: Any, spec: TrainSpec, tokenizer: Any, dtype: str) -> None:
    """The final weights as a plain model folder. trainer.save_model gathers sharded weights
    (DeepSpeed ZeRO-3, FSDP) on every process; the LoRA merge then happens on the main one."""
    model_dir = Path(spec.model_dir)
    if spec.method == "full":
        trainer.save_model(str(model_dir))
    else:
        adapter_dir = Path(spec.output_dir) / "adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.is_world_process_zero():
            import torch
            from peft import AutoPeftModelForCausalLM

            # Reloaded from disk rather than merged in memory: under ZeRO-3/FSDP the in-memory
            # model is sharded, and merging would also mutate the trainer's model.
            merged = AutoPeftModelForCausalLM.from_pretrained(
                str(adapter_dir), dtype=getattr(torch, dtype),
                trust_remote_code=spec.trainer.get("trust_remote_code", False)).merge_and_unload()
            merged.save_pretrained(str(model_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(model_dir))
    trainer.accelerator.wait_for_everyone()


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint whose trainer state was written: a run killed while saving leaves
    a folder without one, which must not be resumed from."""
    done = [p for p in output_dir.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _summary(trainer: Any, resumed: Path | None, seconds: float) -> dict[str, Any]:
    state = trainer.state
    losses = [(h["step"], h["loss"]) for h in state.log_history if "loss" in h]
    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "resumed_from": resumed.name if resumed else None,
        "train_loss_first": losses[0][1] if losses else None,
        "train_loss_last": losses[-1][1] if losses else None,
        "train_loss": losses,
        "trainable_params": trainable,
        "total_params": total,
        "seconds": round(seconds, 2),
    }


# -- callbacks ----------------------------------------------------------------------------------


def show_loss(logs: dict[str, Any]) -> str | None:
    """What sft's bar shows from trl's log: the training loss."""
    return f"loss {float(logs['loss']):.4f}" if "loss" in logs else None


class TrainingProgress(TrainerCallback):
    """A rich progress bar with the latest of trl's logged numbers (main process only): `show` picks
    them (default: the training loss). When stderr is not a terminal (a log file, CI), no bar: one
    plain line per logging step."""

    def __init__(self, label: str = "sft: training",
                 show: Callable[[dict[str, Any]], str | None] = show_loss) -> None:
        self.label = label
        self.show = show
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        from ladder.progress import live

        if not state.is_world_process_zero or not live():
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ladder.progress import console

        self.progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                           loss="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        text = self.show(logs) if logs else None
        if text is None:
            return
        if self.progress:
            self.progress.update(self.task, loss=text)
        elif state.is_world_process_zero:
            from ladder.progress import console

            console.print(f"{self.label}: step {state.global_step}/{state.max_steps} · {text}", highlight=False,
                          markup=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()
            self.progress = None


class CurveCallback(TrainerCallback):
    """At each evaluation, next to trl's test loss: greedy samples on the test examples scored by
    the task metric, the loss over the answer choices, and the share of samples that stopped.

    Generation and scoring are the hf backend's own code (same rendering, same EOS handling as the
    final evaluation), pointed at the model in memory. Every process computes (so DeepSpeed ZeRO-3
    can gather weights in lockstep); only the main one writes.

    Two points generate nothing here: step 0 takes the stage's measurement of the base model
    (`CurveSpec.step0`, answered by the cache), and the final step records the test loss only —
    the stage evaluates the final model right after training and completes the point from that."""

    def __init__(self, spec: TrainSpec, base: HFConfig):
        from ladder.registry import METRICS

        assert spec.curve is not None
        self.path = Path(spec.curves_file)
        self.examples = [Example(**{**e, "choices": tuple(e["choices"]) if e.get("choices") else None})
                         for e in spec.curve.examples]
        self.prompts = [[Message(**m) for m in p] for p in spec.curve.prompts]
        metric_cls = METRICS.get(spec.curve.metric["type"])
        self.metric = metric_cls(metric_cls.Config(**spec.curve.metric))
        self.gen = GenerationConfig(**spec.curve.generation)
        self.backend = LiveBackend(base)
        self.step0 = spec.curve.step0
        self.trainer: Any = None
        self.last_step: int | None = None
        self.final = False
        """Set before the evaluation after training: the stage measures the final model itself."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        step = state.global_step
        point = {"step": step, "epoch": round(state.epoch or 0.0, 4),
                 "test_loss": (metrics or {}).get("eval_loss")}
        if step == 0:
            point.update(self.step0 if self.step0 is not None else self.measure())
        elif not (self.final or step >= state.max_steps):
            point.update(self.measure())
        self.last_step = step
        if state.is_world_process_zero:
            with JsonlWriter(self.path) as out:
                out.write([point])
            from ladder.progress import console

            console.print(describe_point(point), highlight=False)

    def measure(self) -> dict[str, Any]:
        from trl.models.utils import unwrap_model_for_generation

        with warnings.catch_warnings():
            # trl reads the model's deprecated is_gradient_checkpointing: a FutureWarning per point.
            warnings.simplefilter("ignore", FutureWarning)
            with unwrap_model_for_generation(self.trainer.model_wrapped, self.trainer.accelerator) as model:
                was_training = model.training
                model.eval()
                try:
                    self.backend.live = model
                    return self._scores()
                finally:
                    self.backend.live = None
                    model.train(was_training)

    def _scores(self) -> dict[str, Any]:
        queries = choice_queries(self.prompts, self.examples) \
            if all(ex.choices for ex in self.examples) else None
        # One-token choices are scored from the greedy generation's first step (the next-token
        # distribution after each prompt) rather than a second forward pass over the same prompts.
        self.backend.first_steps = {} if queries else None
        try:
            samples = sample_all(self.backend, self.prompts, self.gen)
            lps = self.backend.first_step_logprobs(*queries) if self.backend.first_steps else None
        finally:
            self.backend.first_steps = None
        if self.metric.needs_probabilities:  # choice_prob reads the weights' probabilities, not the text
            from ladder.metrics.probability import probability_scores_with

            scores = probability_scores_with(self.metric, self.examples, self.prompts,
                                             self.backend.continuation_logprobs,
                                             self.backend.continuation_token_counts)
        else:
            scores = [self.metric.score(ex, s.text) for ex, s in zip(self.examples, samples)]
        out = {"metric": _mean([s.value for s in scores]),
               "stop_rate": _mean([s.finish_reason in ("eos", "stop") for s in samples])}
        if queries:
            if lps is None:  # a choice of several tokens, or a generation that could not be watched
                lps = self.backend.continuation_logprobs(*queries)
            out.update(choice_loss(lps, self.examples))
        return out


class LiveBackend(HFBackend):
    """The hf backend's generation and log-probability code over a model held in memory (the one
    being trained) instead of one loaded from `config.name`."""

    def __init__(self, config: HFConfig):
        super().__init__(config)
        self.live: Any = None
        self.first_steps: dict[tuple[int, ...], Any] | None = None
        """While a dict, `sample` fills it: for each prompt generated greedily once, the
        log-probabilities of its next token (generate()'s first step), keyed by the prompt's ids."""

    @property
    def model(self):
        return self.live

    def _generate(self, enc: dict[str, Any], m: int, kwargs: dict[str, Any]):
        """The hf backend's generate(), watched: the logits of its first forward pass (the prompt's,
        left-padded, so the last position is the next token's) are kept, one row per prompt. The
        call itself is unchanged, so are the samples. Left empty where the watch does not fit: the
        caller then scores the choices with its own forward pass."""
        if self.first_steps is None or m != 1 or self.tokenizer.padding_side != "left":
            return super()._generate(enc, m, kwargs)
        import torch

        # A peft model's generate() runs its base model's: watch the module that generate() calls.
        module = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        first: list[Any] = []

        def watch(_module, _args, output):
            logits = getattr(output, "logits", None)
            if not first and logits is not None:
                first.append(logits[:, -1].float())

        handle = module.register_forward_hook(watch)
        try:
            out = super()._generate(enc, m, kwargs)
        finally:
            handle.remove()
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if first and first[0].shape[0] == ids.shape[0]:
            logp = torch.log_softmax(first[0], dim=-1)
            for r in range(ids.shape[0]):
                self.first_steps[tuple(ids[r][mask[r].bool()].tolist())] = logp[r]
        return out

    def first_step_logprobs(self, prompts: list[Sequence[Message]],
                            continuations: list[str]) -> list[float] | None:
        """continuation_logprobs from the first steps kept by the last `sample`, when every
        continuation is one token after a prompt that was generated; else None."""
        import torch

        if not self.first_steps or not prompts:
            return None
        rows = self._continuation_rows(prompts, continuations)
        if any(len(c) != 1 or tuple(p) not in self.first_steps for p, c in rows):
            return None
        # Only the wanted tokens leave the device.
        picked = torch.stack([self.first_steps[tuple(p)][c[0]] for p, c in rows])
        return [float(v) for v in picked.tolist()]


def sample_all(backend: HFBackend, prompts: list[list[Message]], gen: GenerationConfig) -> list[Sample]:
    """One sample per prompt, uncached: the weights change between calls."""
    from ladder.backends.base import Job

    out: list[Sample | None] = [None] * len(prompts)

    def done(j: int, samples: list[Sample], indices: Sequence[int] | None = None) -> None:
        out[j] = samples[0]

    backend.sample([Job(tuple(p), (0,)) for p in prompts], gen, done)
    return out  # type: ignore[return-value]


def describe_point(p: dict[str, Any]) -> str:
    parts = [f"sft: step {p['step']}"]
    if p.get("test_loss") is not None:
        parts.append(f"test loss {p['test_loss']:.4f}")
    if p.get("metric") is None:  # the final step: the stage's evaluation follows
        return " · ".join(parts)
    parts.append(f"metric {p['metric']:.3f}")
    if p.get("choice_loss") is not None:
        parts.append(f"choice loss {p['choice_loss']:.4f}")
    parts.append(f"stopped {p['stop_rate']:.0%}")
    return " · ".join(parts)


def read_curves(path: Path) -> list[dict[str, Any]]:
    """Curve points by step; a resumed run may have re-evaluated a step, the later line wins."""
    by_step = {p["step"]: p for p in read_jsonl(path)}
    return [by_step[s] for s in sorted(by_step)]


def _mean(xs: Sequence[float]) -> float:
    return sum(float(x) for x in xs) / len(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> None:
    """python -m ladder.training.sft_local SPEC.json — what `launch:` runs in each process."""
    from ladder.training.launch import rank_main

    rank_main(sys.argv[1:] if argv is None else argv, "sft_local", "train_spec.json",
              lambda path: train(TrainSpec(**read_json(path))), leave_out="train_loss")


if __name__ == "__main__":
    main()
