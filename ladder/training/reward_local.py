"""Train a preference (reward) model on chosen/rejected pairs with trl's RewardTrainer.

A sequence-classification head with one output on a local backbone, trained with the
Bradley-Terry loss −log σ(r_chosen − r_rejected). The final model (LoRA merged) is saved as a
plain AutoModelForSequenceClassification folder, which the pm scorer loads.

Under the stage's `launch:` every rank runs `python -m ladder.training.reward_local
<run>/reward_spec.json` and reads the pairs from the spec's pairs_file; `batch_size` stays the pairs
per optimizer step (each of N ranks takes 1/N); only the main process writes the model folder.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Literal

from ladder.marker import write_marker
from ladder.store import read_json
from ladder.training import JobSpec, hardware_args, load_base, peft_config
from ladder.training.sft_local import TrainingProgress, last_checkpoint
from ladder.training.timed_save import timed_save


class RewardSpec(JobSpec):
    """A reward-model run's job: the common fields (all weights by default) and the pairs."""

    method: Literal["lora", "full"] = "full"
    """LoRA adapters (plus the new score head, trained in full) or all weights."""
    pairs_file: str | None = None
    """JSON list of the training pairs (written for a launched run; in-process training is handed them)."""


def train(spec: RewardSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Train on `rows` ({"chosen", "rejected"}: strings or message lists), resuming from the newest
    checkpoint; save the merged model and return the summary written to model/ladder_training.json."""
    import datasets
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import RewardConfig, RewardTrainer

    started = time.perf_counter()
    datasets.disable_progress_bars()
    base, path, tokenizer = load_base(spec.model)

    args = dict(spec.trainer)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher
    if args["per_device_train_batch_size"] % world:
        raise SystemExit(f"batch_size {args['per_device_train_batch_size']} does not split evenly over {world} "
                         f"processes: make it a multiple of {world}")
    args["per_device_train_batch_size"] //= world
    hardware_args(args, base, RewardConfig)
    config = RewardConfig(output_dir=spec.output_dir, **args)

    lora = peft_config(spec, "SEQ_CLS")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some weights were newly initialized": the score head, as intended
        trainer = RewardTrainer(model=path, args=config, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer, peft_config=lora,
                                callbacks=[TrainingProgress("reward_model: training"),
                                           *timed_save(spec.save_every_minutes)])
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    resume = last_checkpoint(Path(spec.output_dir))
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    state = trainer.state
    log = [{"step": h["step"], "loss": h["loss"], **({"accuracy": h["accuracy"]} if "accuracy" in h else {})}
           for h in state.log_history if "loss" in h]
    summary = {"steps": state.global_step, "resumed_from": resume.name if resume else None, "log": log,
               "train_pairs": len(rows), "processes": trainer.accelerator.num_processes,
               "seconds": round(time.perf_counter() - started, 2)}
    model_dir = Path(spec.model_dir)
    if spec.method == "full":
        trainer.save_model(str(model_dir))  # on every rank: gathers sharded weights (ZeRO-3, FSDP); rank 0 writes
    elif trainer.is_world_process_zero():  # under DDP every rank holds the same weights
        trainer.model.merge_and_unload().save_pretrained(str(model_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(model_dir))
        write_marker(model_dir, {**summary, "policy": "reward_model"})  # last: marks training as finished
    trainer.accelerator.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> None:
    """python -m ladder.training.reward_local SPEC.json — what the reward_model stage's `launch:` runs."""
    from ladder.training.launch import rank_main

    def run(path: Path) -> dict[str, Any]:
        spec = RewardSpec(**read_json(path))
        if spec.pairs_file is None:
            raise SystemExit(f"{path} names no pairs_file")
        return train(spec, read_json(Path(spec.pairs_file)))

    rank_main(sys.argv[1:] if argv is None else argv, "reward_local", "reward_spec.json", run, leave_out="log")


if __name__ == "__main__":
    main()
