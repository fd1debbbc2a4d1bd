"""Online RL on a local hf model with trl's GRPOTrainer or RLOOTrainer.

The reward is a plain callable over (train example index, completion text) pairs, so any ladder
scorer — the task metric, a PM with its reference, a judge, a Python function — rewards the
policy exactly as it selects samples in best_of_n. Every rollout is appended to rollouts.jsonl
(step, example, completion, reward, length): what the policy learned to say is read there, not
guessed from the reward curve. Checkpoints go to `output_dir` and a re-run resumes from the
newest; the final model (LoRA merged) is saved as a plain folder marked as an RL policy, and so
is every checkpoint (ladder_training.json with `policy: rl`), so none of them passes for a base model.

Under a launcher (the stage's `launch:`) every rank runs `python -m ladder.training.rl_local
<run>/rl_spec.json`: the prompts come from the spec's prompts_file, and each rank's reward function
asks the stage's process (ladder/training/remote.py), which scores every rank's completions and
writes all of them to rollouts.jsonl. `prompts_per_step` stays the number per optimizer step: each
of N ranks samples 1/N of it. Only the main process writes checkpoint markers and the final model.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from transformers import TrainerCallback

from ladder.marker import rl_marker, write_marker
from ladder.store import JsonlWriter, read_json
from ladder.training import JobSpec, hardware_args, load_base, peft_config
from ladder.training.sft_local import TrainingProgress, last_checkpoint, save_model
from ladder.training.timed_save import timed_save

Reward = Callable[[Sequence[int], Sequence[str]], "list[float] | tuple[list[float], list[float]]"]
"""(indices into the training examples, completion texts) → one reward per completion, or (rewards,
USD each reward's model calls cost) for a scorer that calls a priced API (a judge)."""

# What the stage plots from trl's per-step logs, under ladder's names.
LOGGED = {"reward": "reward", "reward_std": "reward_std", "kl": "kl",
          "completions/mean_length": "length", "entropy": "entropy", "loss": "loss",
          "frac_reward_zero_std": "frac_reward_zero_std"}


class RLSpec(JobSpec):
    """An RL run's job: the common fields, and the algorithm, rollouts and prompts."""

    algorithm: Literal["grpo", "rloo"] = "grpo"
    """trl trainer: GRPOTrainer or RLOOTrainer."""
    rollouts_file: str
    """One JSON line per sampled completion."""
    stop: list[str] = []
    """Completions are cut at the first stop string before they are rewarded, as evaluation cuts them."""
    prompts_file: str | None = None
    """JSON list of the trl prompts (written for a launched run; in-process training is handed them)."""


def train(spec: RLSpec, prompts: list[Any], reward: Reward | Any) -> dict[str, Any]:
    """Train on `prompts` (trl prompts: message lists or plain strings), resuming from the newest
    checkpoint; save the merged model; return the summary also written to model/ladder_training.json.
    `reward`: a Reward, or (a launched rank) a remote.RemoteRollouts that rewards and logs in the stage."""
    import datasets
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if spec.algorithm == "grpo":
        from trl import GRPOConfig as TrlConfig
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as TrlConfig
        from trl import RLOOTrainer as Trainer

    started = time.perf_counter()
    datasets.disable_progress_bars()
    base, path, tokenizer = load_base(spec.model)
    tokenizer.padding_side = "left"

    args = dict(spec.trainer)
    args["per_device_train_batch_size"] = per_process(args["per_device_train_batch_size"])
    dtype = hardware_args(args, base, TrlConfig)
    config = TrlConfig(output_dir=spec.output_dir, **args)

    lora = peft_config(spec)

    from ladder.training.remote import RemoteRollouts

    sink = reward if isinstance(reward, RemoteRollouts) else Rollouts(Path(spec.rollouts_file), reward)
    rollouts = RolloutLog(sink, spec.stop)
    rows = [{"prompt": p, "ex_index": i} for i, p in enumerate(prompts)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # trl's advice to install vLLM/liger on CPU runs
        warnings.simplefilter("ignore", FutureWarning)  # peft/trl read transformers' renamed checkpointing flag
        trainer = Trainer(model=path, reward_funcs=rollouts, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=lora,
                          callbacks=[TrainingProgress(f"rl ({spec.algorithm}): training", show=show_reward),
                                     MarkCheckpoints(spec.algorithm), *timed_save(spec.save_every_minutes)])
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    resume = last_checkpoint(Path(spec.output_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    summary = _summary(trainer, resume, time.perf_counter() - started)
    save_model(trainer, spec, tokenizer, dtype)  # type: ignore[arg-type]  # the same four fields as TrainSpec
    if trainer.is_world_process_zero():
        adapter = Path(spec.output_dir) / "adapter"
        if adapter.is_dir():  # the LoRA adapters alone are this policy too
            write_marker(adapter, rl_marker(spec.algorithm, adapter=True))
        # `policy: rl` marks the folder: any later use of its probabilities is refused.
        write_marker(spec.model_dir, {**summary, **rl_marker(spec.algorithm)})
    return summary


def show_reward(logs: dict[str, Any]) -> str | None:
    """What the rl bar shows from trl's log: the mean reward of the step's rollouts and
    the KL to the reference model. Not the loss: GRPO's is ≈0 by construction (group-normalised
    advantages average to zero), so it says nothing about progress. trl logs `kl` only when
    beta > 0 (its default is 0: no reference model)."""
    if "reward" not in logs:
        return None
    text = f"mean reward {float(logs['reward']):.3f}"
    return text + (f" · KL {float(logs['kl']):.4f}" if logs.get("kl") is not None else " · KL off (beta 0)")


class MarkCheckpoints(TrainerCallback):
    """Marks every saved checkpoint as an RL policy, as the final model folder is: a checkpoint
    named as a model (`model.name: .../checkpoints/checkpoint-8`) is refused a probability metric
    like the final policy. The marker says `checkpoint: true`; only model/'s marks training finished."""

    def __init__(self, algorithm: str):
        self.algorithm = algorithm

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_marker(folder, rl_marker(self.algorithm, checkpoint=True, step=state.global_step))


class Rollouts:
    """Rewards a batch of rollouts through the stage's scorer and appends them to rollouts.jsonl
    with the optimizer step they belong to — in the stage's process, whichever rank sampled them."""

    def __init__(self, path: Path, reward: Reward):
        self.path = path
        self.reward = reward

    def __call__(self, indices: Sequence[int], texts: Sequence[str], step: int, tokens: Sequence[int]) -> list[float]:
        got = self.reward(indices, texts)
        values, costs = got if isinstance(got, tuple) else (got, [0.0] * len(texts))
        values = [float(v) for v in values]
        with JsonlWriter(self.path) as out:
            out.write([{"step": step, "example": i, "text": t, "reward": v, "tokens": n, **({"cost": c} if c else {})}
                       for i, t, v, c, n in zip(indices, texts, values, costs, tokens)])
        return values


class RolloutLog:
    """The reward function trl calls (on each rank, with that rank's completions): cuts each
    completion at the stop strings and hands it to `sink` (Rollouts, or RemoteRollouts under launch)."""

    def __init__(self, sink: Callable[[Sequence[int], Sequence[str], int, Sequence[int]], list[float]],
                 stop: Sequence[str]):
        self.sink = sink
        self.stop = list(stop)
        self.__name__ = "reward"  # trl names the logged metric after the function

    def __call__(self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]],
                 ex_index: list[int], trainer_state: Any, **_: Any) -> list[float]:
        texts = [self.cut(c[-1]["content"] if isinstance(c, list) else c) for c in completions]
        step = trainer_state.global_step + 1  # rollouts are sampled for the step about to be taken
        return self.sink(list(ex_index), texts, step, [len(ids) for ids in completion_ids])

    def cut(self, text: str) -> str:
        ends = [text.find(s) for s in self.stop if s in text]
        return text[:min(ends)] if ends else text


def per_process(total: int) -> int:
    """A launched rank's share of the completions per step (WORLD_SIZE ranks, set by the launcher):
    `prompts_per_step` means the same per optimizer step however many processes train."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if total % world:
        raise SystemExit(f"prompts_per_step × generations = {total} completions per step do not split evenly "
                         f"over {world} processes: make it a multiple of {world}")
    return total // world


def main(argv: list[str] | None = None) -> None:
    """python -m ladder.training.rl_local SPEC.json — what the rl stage's `launch:` runs in each process."""
    from ladder.training.remote import RemoteRollouts

    from ladder.training.launch import rank_main

    def run(path: Path) -> dict[str, Any]:
        spec = RLSpec(**read_json(path))
        if spec.prompts_file is None:
            raise SystemExit(f"{path} names no prompts_file")
        return train(spec, read_json(Path(spec.prompts_file)), RemoteRollouts())

    rank_main(sys.argv[1:] if argv is None else argv, "rl_local", "rl_spec.json", run, leave_out="log")


def _summary(trainer: Any, resumed: Path | None, seconds: float) -> dict[str, Any]:
    state = trainer.state
    steps = [{"step": h["step"], **{name: float(h[key]) for key, name in LOGGED.items() if key in h}}
             for h in state.log_history if "reward" in h]
    model = trainer.model
    return {
        "steps": state.global_step,
        "resumed_from": resumed.name if resumed else None,
        "log": steps,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "processes": trainer.accelerator.num_processes,
        "seconds": round(seconds, 2),
    }


if __name__ == "__main__":
    main()
