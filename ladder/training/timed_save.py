"""TimedSave: a checkpoint every `save_every_minutes` of training, beside the step-based ones.

The step-based checkpoints of a stage come a quarter of the run apart by default, so a run
interrupted before the first of them loses everything. This callback asks the trainer for one more
checkpoint whenever that much wall time has passed since the last one (of either kind). It goes
through the trainer's own save (`control.should_save`), so a timed checkpoint is an ordinary
`checkpoint-N` folder: the trainers resume from the newest complete one (`last_checkpoint`), the
other callbacks' `on_save` see it (rl's policy marker), and `save_total_limit` rotation deletes the
oldest ones by step, never the newest.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from transformers import TrainerCallback


class TimedSave(TrainerCallback):
    """Set `control.should_save` at the end of a step once `minutes` have passed since the last save
    (or since training began). `clock`: seconds, monotonic; a test passes a fake one.

    Under several processes (DDP, DeepSpeed, FSDP) saving is collective, and each process's clock
    would decide a little differently: the main process decides and the others follow it."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = minutes * 60.0
        self.clock = clock
        self.last = clock()

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.last = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
        due = self.clock() - self.last >= self.seconds
        if getattr(args, "world_size", 1) > 1:
            due = _main_process_says(due, args)
        if due:
            control.should_save = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.last = self.clock()  # a step-based checkpoint restarts the clock too


def _main_process_says(flag: bool, args: Any) -> bool:
    """`flag` as the main process has it, on every process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=args.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def timed_save(minutes: float | None) -> list[TimedSave]:
    """The callbacks a trainer gets for a stage's `save_every_minutes` (none for 0 or None)."""
    return [TimedSave(minutes)] if minutes else []
