"""Interrupting a local training run at a given step, then counting the steps a re-run trains:
what the resume tests of sft (step-based and timed checkpoints) share."""

from __future__ import annotations

from typing import Any, Callable

import pytest


def interrupted_then_resumed(monkeypatch: Any, run: Callable[[], Any], step: int) -> tuple[Any, list[int]]:
    """Run `run()` with a KeyboardInterrupt raised once step `step`'s checkpoint is saved (as Ctrl-C
    there would), run it again uninterrupted; returns the second run's result and the steps it
    trained."""
    from ladder.training.sft_local import TrainingProgress

    on_save, on_step_end = TrainingProgress.on_save, TrainingProgress.on_step_end

    def killed(self, args, state, control, **kw):
        if state.global_step == step:
            raise KeyboardInterrupt
        return on_save(self, args, state, control, **kw)

    monkeypatch.setattr(TrainingProgress, "on_save", killed)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(TrainingProgress, "on_save", on_save)

    steps_run: list[int] = []

    def counting(self, args, state, control, **kw):
        steps_run.append(state.global_step)
        return on_step_end(self, args, state, control, **kw)

    monkeypatch.setattr(TrainingProgress, "on_step_end", counting)
    result = run()
    monkeypatch.setattr(TrainingProgress, "on_step_end", on_step_end)
    return result, steps_run
