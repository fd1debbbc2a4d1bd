"""The training progress line: sft shows the loss, rl the mean reward and KL (GRPO's loss is ≈0 by
construction); without a terminal, one plain line per logging step instead of a bar."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

import ladder.progress
from ladder.training.rl_local import show_reward
from ladder.training.sft_local import TrainingProgress, show_loss

# A GRPO log as trl 1.16 writes it (GRPOTrainer.log: the step's averaged _metrics).
GRPO_LOG = {"loss": 0.0, "grad_norm": 0.12, "learning_rate": 1e-5, "num_tokens": 4096.0,
            "completions/mean_length": 3.5, "reward": 0.4375, "reward_std": 0.25, "frac_reward_zero_std": 0.5,
            "kl": 0.00312, "entropy": 1.9, "epoch": 0.1}


def test_rl_shows_mean_reward_and_kl_not_the_loss():
    text = show_reward(GRPO_LOG)
    assert text == "mean reward 0.438 · KL 0.0031"
    assert "KL off" in show_reward({**GRPO_LOG, "kl": None}) and "KL off" in show_reward(
        {k: v for k, v in GRPO_LOG.items() if k != "kl"})  # beta 0: trl logs no kl
    assert show_reward({"eval_loss": 1.0}) is None  # an evaluation log moves nothing


def test_sft_shows_the_loss():
    assert show_loss({"loss": 1.23456}) == "loss 1.2346" and show_loss({"train_runtime": 3.0}) is None


def test_without_a_terminal_each_logging_step_is_one_plain_line(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(ladder.progress, "console", Console(file=buf, width=40, soft_wrap=True))
    progress = TrainingProgress("rl (grpo): training", show=show_reward)
    state = SimpleNamespace(is_world_process_zero=True, global_step=3, max_steps=50)
    progress.on_train_begin(None, state, None)
    assert progress.progress is None  # no bar off a terminal
    progress.on_log(None, state, None, logs=GRPO_LOG)
    progress.on_log(None, state, None, logs={"train_runtime": 1.0})
    progress.on_train_end(None, state, None)
    assert buf.getvalue() == "rl (grpo): training: step 3/50 · mean reward 0.438 · KL 0.0031\n"
