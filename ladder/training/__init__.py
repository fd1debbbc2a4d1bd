"""Training code behind the rungs that change weights (sft, rl, reward_model): the stage decides *what* to train on
and how the result is evaluated; the modules here only train, trl-style (config / trainer / script).
The stages import from here; nothing here imports a stage.

sft_local.py     trl SFTTrainer (+ peft LoRA), also runnable as a script under `accelerate launch`
sft_openai.py    the OpenAI files + fine-tuning jobs API
rl_local.py      trl GRPOTrainer / RLOOTrainer on any ladder scorer's reward
reward_local.py  trl RewardTrainer on preference pairs
launch.py        `launch:` — training in child processes under accelerate/torchrun, for every training stage
remote.py        rl's reward served from the stage's process to launched ranks over a local socket
lora.py          LoraSettings, the `lora:` section of every training stage
rows.py          supervised rows (TrainRow): data files, trl's format, the chat-template check
choices.py       the loss over the answer choices and its chance level
marker.py        ladder_training.json, the marker of a finished training run (and of an RL policy)
timed_save.py    TimedSave: a checkpoint every `save_every_minutes` of training, beside the step-based ones
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Literal, Sequence, TypeVar

from pydantic import Field, field_validator

from ladder.config import Section, StageConfig
from ladder.config.schema import count_or_all
from ladder.guards import seeded_draw
from ladder.types import Guard

T = TypeVar("T")

DEFAULT_TRAIN_SUBSAMPLE = 4000
"""Training rows a stage uses unless its `train_subsample` says otherwise (see the field)."""

DEFAULT_SAVE_EVERY_MINUTES = 5.0
"""Minutes of training between two time-based checkpoints unless `save_every_minutes` says otherwise."""


def trained_model(ctx: Any, **update: Any) -> Any:
    """The backend of a model a stage trained: the stage's own model config with `update` (e.g. the
    model folder as `name`), loaded through the run's shared pool so later stages reuse it."""
    from ladder.backends.base import BackendPool

    if ctx.pool is None:  # a context built outside the runner
        ctx.pool = BackendPool()
    return ctx.pool.get(ctx.backend.config.model_copy(update=update))


def check_trainer_args(v: dict[str, Any], owned: set[str], trl_configs: Iterable[str], own_keys: str) -> dict[str, Any]:
    """Validate a stage's `trainer_args`: keys the stage sets itself are refused (naming the
    stage's own key list), and keys no named trl config class has are unknown."""
    clash = sorted(owned & set(v))
    if clash:
        raise ValueError(f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set by the stage: "
                         f"use its own keys ({own_keys})")
    if v:
        import dataclasses

        import trl

        names = list(trl_configs)
        known = set().union(*({f.name for f in dataclasses.fields(getattr(trl, n))} for n in names))
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown trl {'/'.join(names)} key(s) {', '.join(unknown)}")
    return v


class TrainingStageConfig(StageConfig):
    """Keys every training stage (sft, rl, reward_model) has beside its own."""

    report_to: list[str] = Field(default_factory=list)
    """Where trl also sends its training logs: transformers' `report_to` integrations
    (wandb, tensorboard, mlflow, trackio, ...; "all": every one installed), each configured as
    usual (WANDB_PROJECT, ...). ladder keeps its own curves either way. TensorBoard logs go to this
    stage's run folder (<run_id>/tensorboard). Not part of the run id: it changes where logs go,
    not what is trained, so a finished stage is reused as it is. (sft's openai route refuses it.)"""

    launch: str | None = None
    """local: train in child processes started by this command, e.g. 'accelerate launch --config_file
    fsdp.yaml' or 'torchrun --nproc_per_node 8' (multi-GPU, DeepSpeed, FSDP); each runs
    `<launch> -m ladder.training.<sft|rl|reward>_local <run>/<spec>.json`. Unset: train in this process.
    (rl: every rank must run on this machine — the reward is served from this process.)"""

    train_subsample: int | Literal["all"] = DEFAULT_TRAIN_SUBSAMPLE
    """At most this many training rows — the task's train split, sft's `data:` file, reward_model's
    training pairs — drawn at random with the stage's seed, kept in data order, the same rows on
    every re-run; "all": every row. Default 4,000: enough to see whether training helps at all (at
    batch 16 that is 250 sft steps, a few minutes for a small model), where a big train split makes
    the first look wait (SST-2's 67,349 rows: 4,210 steps, over 40 minutes even for ladder-tiny on 2 CPU
    cores, hours for a real model). When rows are left out the `train_subsample` guard says how
    many; metrics.json and manifest.json record the rows there were, the rows used, the seed and a
    digest of them. Part of the run id: it changes what is trained. For the final number set it
    higher, or "all"."""
    save_every_minutes: float | None = Field(DEFAULT_SAVE_EVERY_MINUTES, ge=0)
    """Local training: also checkpoint once this many minutes of training have passed since the last
    checkpoint, so that an interrupted stage (Ctrl-C, a killed job) resumes near where it stopped
    rather than from the last step-based checkpoint (`save_steps`: by default a quarter of the run
    apart for sft and rl, 200 steps for reward_model). 0 or null: step-based checkpoints only; raise
    it when a checkpoint takes long to write (full weights of a large model, with their optimizer
    state). Not part of the run id: it changes when checkpoints are written, not what is trained.
    (sft's openai route has no checkpoints of ours.)"""

    owned_trainer_keys: ClassVar[set[str]] = set()
    """Keys of the trl config that the stage sets itself: `trainer_args` may not repeat them."""
    trl_configs: ClassVar[tuple[str, ...]] = ()
    """The trl config classes whose keys `trainer_args` may hold."""
    own_keys: ClassVar[str] = ""
    """The stage's own keys, named when `trainer_args` repeats one of them."""

    # Each stage declares `trainer_args` itself (its docstring names its trl class), so the field is
    # not checked here; every stage that declares it gets this check.
    @field_validator("trainer_args", check_fields=False)
    @classmethod
    def _trainer_args_known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(v, cls.owned_trainer_keys, cls.trl_configs, cls.own_keys)

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> list[str]:
        return report_targets(v)

    @field_validator("launch")
    @classmethod
    def _launch(cls, v: str | None) -> str | None:
        from ladder.training.launch import check_launch

        return check_launch(v)

    @field_validator("train_subsample")
    @classmethod
    def _train_subsample(cls, v: int | str) -> int | str:
        return count_or_all(v)


def draw_train(items: Sequence[T], cfg: TrainingStageConfig, seed: int, content: Callable[[T], Any],
               what: str = "train examples") -> tuple[list[T], dict[str, Any], list[Guard]]:
    """The stage's `train_subsample` of its training rows: a seeded random draw kept in data order
    (all of them when there are no more than it asks for); the record of the draw for metrics.json
    and manifest.json — rows there were (`total`), rows used (`n`), the setting, the seed and a
    digest of the used rows' `content` (a JSON-able value per row) — and, when rows were left out,
    the `train_subsample` guard (info), also printed at once: the user learns it before training."""
    from ladder.cache import cache_key

    total, n = len(items), cfg.train_subsample
    chosen = seeded_draw(items, n, seed)
    record = {"train_subsample": n, "total": total, "n": len(chosen), "seed": seed,
              "digest": cache_key({"rows": [content(x) for x in chosen]})}
    if len(chosen) == total:
        return chosen, record, []
    why = "default" if "train_subsample" not in cfg.model_fields_set else f"{n}, seed {seed}"
    guard = Guard("train_subsample", "info", f"trained on {len(chosen):,} of {total:,} {what} (train_subsample: "
                  f"{why}); set train_subsample: all to use every row", float(len(chosen)))
    from ladder.progress import console

    console.print(f"[cyan]info[/cyan] {cfg.name}: {guard.name}: {guard.message}", highlight=False)
    return chosen, record, [guard]


TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
    "trackio": ("trackio",), "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",),
    "codecarbon": ("codecarbon",), "dvclive": ("dvclive",), "swanlab": ("swanlab",), "azure_ml": ("azureml",),
    "dagshub": ("dagshub",), "flyte": ("flytekit",),
}
"""transformers' report_to integrations → the modules any one of which it needs (as its own
`is_<name>_available` checks find them)."""
TRACKER_PACKAGES = {"tensorboard": "tensorboard (in ladder's train extra: pip install 'ladder[train]')",
                    "comet_ml": "comet-ml", "azure_ml": "azureml-core"}
"""What to install for a tracker, where it is not the integration's own name."""


def report_targets(v: Any) -> list[str]:
    """A stage's `report_to` as a list ("wandb" → ["wandb"]; "none" → []). A tracker whose package
    is missing is refused here, at load: transformers would otherwise fail with a traceback once
    training starts, after the results folder was written."""
    import importlib.util

    items = [v] if isinstance(v, str) else list(v or [])
    if not all(isinstance(x, str) and x.strip() for x in items):
        raise ValueError("report_to takes integration names, e.g. [wandb] or [tensorboard]")
    names = [x.strip() for x in items if x.strip() != "none"]
    for name in names:
        modules = TRACKER_MODULES.get(name, ())
        if modules and not any(importlib.util.find_spec(m) is not None for m in modules):
            raise ValueError(f"report_to '{name}' needs the {name} package, which is not installed here; "
                             f"pip install {TRACKER_PACKAGES.get(name, name)}, or drop it from report_to")
    return names


def tracking_args(report_to: list[str], run_dir: Any) -> dict[str, Any]:
    """The trainer arguments for a stage's `report_to`: "none" unless asked, and TensorBoard's
    folder in the run folder (`logging_dir`, applied by `hardware_args`)."""
    if not report_to:
        return {"report_to": "none"}
    return {"report_to": list(report_to), "logging_dir": str(run_dir / "tensorboard")}


def hardware_args(args: dict[str, Any], base: Any, config_cls: type) -> str:
    """Fill a trl config's arguments from the hardware and the hf backend config `base` (bf16 only
    where the GPU has it — trl defaults it on, which CPUs reject; activation checkpointing off
    unless asked — trl defaults it on, ~20% slower); returns the dtype the model loads in."""
    import dataclasses

    import torch

    gpu = torch.cuda.is_available() and base.device != "cpu"
    args.setdefault("bf16", gpu and torch.cuda.is_bf16_supported())
    args.setdefault("use_cpu", not gpu)
    args.setdefault("dataloader_pin_memory", gpu)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    logging_dir = args.pop("logging_dir", None)
    if logging_dir and "logging_dir" in fields:
        args["logging_dir"] = logging_dir
    elif logging_dir:  # transformers 5 dropped the argument: its TensorBoard callback reads this instead
        import os

        os.environ["TENSORBOARD_LOGGING_DIR"] = logging_dir
    # transformers 5.2x renamed gradient_checkpointing; the old name still works but warns on every run.
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    args.setdefault(name, args.pop("gradient_checkpointing", False))
    dtype = base.dtype if base.dtype != "auto" else ("bfloat16" if args["bf16"] else "float32")
    args["model_init_kwargs"] = {"dtype": dtype, "revision": base.revision, **(args.get("model_init_kwargs") or {})}
    args.setdefault("trust_remote_code", base.trust_remote_code)
    return dtype


def load_base(model: dict[str, Any]) -> tuple[Any, str, Any]:
    """The base model's hf config, its path (built-in names resolved) and its tokenizer, with a pad
    token (many causal LMs ship without one; batches need it)."""
    from transformers import AutoTokenizer

    from ladder.backends.hf import HFConfig, resolve_model_path

    base = HFConfig(**model)
    path = resolve_model_path(base.name)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=base.revision, trust_remote_code=base.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return base, path, tokenizer


def peft_config(spec: Any, task_type: str = "CAUSAL_LM") -> Any:
    """The peft LoraConfig of a spec with `method: lora` (None for full training). With SEQ_CLS
    peft also trains the new score head in full, as a reward model needs (it starts random)."""
    if spec.method != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, **(spec.lora or {}))


class JobSpec(Section):
    """What every local training run needs (sft_local's TrainSpec, rl_local's RLSpec and
    reward_local's RewardSpec add their own): JSON in the run folder, so a launcher's processes can
    read it and the run keeps it for the record."""

    model: dict[str, Any]
    """The starting model's hf backend config."""
    method: Literal["lora", "full"] = "lora"
    """LoRA adapters (merged after training) or all weights."""
    lora: dict[str, Any] | None = None
    """peft LoraConfig arguments."""
    trainer: dict[str, Any]
    """The trl trainer config's arguments (output_dir excluded)."""
    output_dir: str
    """Checkpoints go here (checkpoint-N folders)."""
    model_dir: str
    """The final merged model goes here."""
    save_every_minutes: float | None = None
    """Also checkpoint after this many minutes of training since the last checkpoint (TimedSave)."""
