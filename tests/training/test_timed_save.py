"""save_every_minutes: a checkpoint every so many minutes of training (TimedSave), beside the
step-based ones, so an interrupted stage resumes near where it stopped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from ladder.config import load_experiment
from ladder.runner import run_experiment
from ladder.store import read_json
from ladder.training.timed_save import TimedSave, timed_save
from tests.conftest import experiment

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_asks_for_a_save_once_the_minutes_have_passed_since_the_last_save():
    clock, args, state = Clock(), SimpleNamespace(world_size=1), SimpleNamespace()
    saver = TimedSave(2.0, clock=clock)
    saver.on_train_begin(args, state, TrainerControl())

    def step(seconds: float) -> bool:
        clock.now += seconds
        control = TrainerControl()
        return saver.on_step_end(args, state, control).should_save

    assert not step(60) and not step(59)
    assert step(1)  # 2 minutes since training began
    saver.on_save(args, state, TrainerControl())
    assert not step(119) and step(1)
    saver.on_save(args, state, TrainerControl())  # a step-based save restarts the clock too
    assert not step(100)
    # It only ever adds a save: a step the trainer saves anyway stays saved.
    control = TrainerControl(should_save=True)
    assert saver.on_step_end(args, state, control).should_save
    assert timed_save(0) == [] and timed_save(None) == [] and len(timed_save(5)) == 1


def checkpoints(run_dir) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))


@pytest.mark.slow
def test_sft_interrupted_before_its_first_step_checkpoint_resumes_from_a_timed_one(tmp_path, random_model,
                                                                                   monkeypatch):
    from tests.training.interrupt import interrupted_then_resumed

    # Step-based checkpoints only at the end (step 4); a timed one after every step (each takes
    # longer than 0.6 ms).
    stages = [{"type": "sft", "batch_size": 8, "learning_rate": 1e-2, "max_steps": 4, "save_steps": 4,
               "curves": False, "save_every_minutes": 1e-5}]
    path = experiment(tmp_path, random_model, n_test=8, stages=stages)
    seen = []

    def run():
        if seen:  # the re-run: what the interrupted one left
            run_dir = next((tmp_path / "results" / "t" / "sft").iterdir())
            assert checkpoints(run_dir) == ["checkpoint-1", "checkpoint-2"]  # before the first step-based one
        seen.append(1)
        return run_experiment(load_experiment(path))[0]

    result, steps_run = interrupted_then_resumed(monkeypatch, run, step=2)
    run_dir = next((tmp_path / "results" / "t" / "sft").iterdir())
    assert result.extra.training["resumed_from"] == "checkpoint-2" and steps_run == [3, 4]
    # Rotation (save_total_limit 2) drops the oldest, never the newest.
    assert checkpoints(run_dir) == ["checkpoint-3", "checkpoint-4"]


@pytest.mark.slow
def test_rl_timed_checkpoints_are_marked_as_rl_policies(tmp_path):
    stages = [{"type": "rl", "steps": 2, "generations": 2, "prompts_per_step": 2, "method": "full",
               "learning_rate": 1e-3, "save_steps": 10, "best_of_n": False, "save_every_minutes": 1e-5}]
    result = run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages)))[0]
    run_dir = next((tmp_path / "results" / "t" / "rl").iterdir())
    assert checkpoints(run_dir) == ["checkpoint-1", "checkpoint-2"]  # step 1: timed (save_steps is 10)
    for name in checkpoints(run_dir):
        marker = read_json(run_dir / "checkpoints" / name / "ladder_training.json")
        assert marker["policy"] == "rl" and marker["checkpoint"] is True
    assert result.extra.training["steps"] == 2
