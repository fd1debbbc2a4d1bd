"""`report_to` on the training stages: accepted, passed to trl's arguments, TensorBoard logs in
the run folder, and no new run id (it changes where logs go, not what is trained)."""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace

import pytest

from ladder.config import load_experiment
from ladder.errors import ConfigError
from ladder.stages.reward_model import RewardModel, RewardModelConfig
from ladder.stages.rl import RL, RLConfig
from ladder.stages.sft import SFT, SFTConfig
from ladder.training import tracking_args
from ladder.training.rows import TrainRow
from ladder.types import Example, Message
from tests.conftest import experiment

BASE = SimpleNamespace(config=SimpleNamespace(model_dump=lambda mode=None: {"backend": "hf", "name": "m"}),
                       uses_chat_template=False, context_window=512)


def test_the_stages_accept_report_to():
    assert SFTConfig(report_to="wandb").report_to == ["wandb"]
    assert RLConfig(report_to=["tensorboard", "wandb"]).report_to == ["tensorboard", "wandb"]
    assert RewardModelConfig(data="p.jsonl", report_to="none").report_to == []
    assert SFTConfig().report_to == []
    with pytest.raises(ValueError, match="integration names"):
        SFTConfig(report_to=[""])
    with pytest.raises(ValueError, match="use its own keys .*report_to"):
        SFTConfig(trainer_args={"report_to": "wandb"})  # one place to say it


def test_report_to_reaches_the_trainer_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr("ladder.stages.sft.trl_row", lambda row, base, chat: {"prompt": "p", "completion": "c"})
    ex = Example("test-0", {"text": "x"}, "positive")
    ctx = SimpleNamespace(run_dir=tmp_path, examples=[ex], experiment=SimpleNamespace(
                              config=SimpleNamespace(seed=0), seed_for=lambda seed: 0 if seed is None else seed,
                          metric=SimpleNamespace(model_dump=lambda mode=None: {})),
                          task=SimpleNamespace(render=lambda ex: [Message("user", "x")]),
                          gen=SimpleNamespace(max_tokens=4, stop=None,
                                              model_copy=lambda update: SimpleNamespace(model_dump=lambda mode=None: {})),
                          backend=BASE)
    rows = [TrainRow([Message("user", "x")], "positive")]
    quiet = SFT(SFTConfig(curves=False)).train_spec(ctx, rows, BASE).trainer
    assert quiet["report_to"] == "none" and "logging_dir" not in quiet
    loud = SFT(SFTConfig(curves=False, report_to=["tensorboard"])).train_spec(ctx, rows, BASE).trainer
    assert loud["report_to"] == ["tensorboard"] and loud["logging_dir"] == str(tmp_path / "tensorboard")
    rl = RL(RLConfig(report_to="wandb")).spec(ctx, BASE).trainer
    assert rl["report_to"] == ["wandb"] and rl["logging_dir"] == str(tmp_path / "tensorboard")
    assert RL(RLConfig()).spec(ctx, BASE).trainer["report_to"] == "none"
    rm = RewardModel(RewardModelConfig(data="p.jsonl", report_to=["tensorboard"])).spec(ctx, 0, 64).trainer
    assert rm["report_to"] == ["tensorboard"] and rm["logging_dir"] == str(tmp_path / "tensorboard")


def test_logging_dir_reaches_tensorboard_on_any_transformers(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    import dataclasses

    from trl import SFTConfig as TrlSFTConfig

    from ladder.training import hardware_args

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    args = {"learning_rate": 1e-3, **tracking_args(["tensorboard"], tmp_path)}
    base = SimpleNamespace(device="cpu", dtype="auto", revision=None, trust_remote_code=False)
    hardware_args(args, base, TrlSFTConfig)
    if "logging_dir" in {f.name for f in dataclasses.fields(TrlSFTConfig)}:
        assert args["logging_dir"] == str(tmp_path / "tensorboard")
    else:  # transformers 5: the TensorBoard callback reads the environment
        assert "logging_dir" not in args and os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tensorboard")
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        config = TrlSFTConfig(output_dir=str(tmp_path / "out"), **args)
        assert config.report_to == ["tensorboard"]


def test_report_to_does_not_change_the_run_id(tmp_path):
    from ladder.runner import prepare

    stages = [{"type": "sft", "name": "s", "route": "local"}]
    quiet = load_experiment(experiment(tmp_path, "ladder-tiny", stages=stages))
    loud = load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{**stages[0], "report_to": ["wandb"]}]))
    assert prepare(quiet).resolve(quiet.stages[0]).run_id == prepare(loud).resolve(loud.stages[0]).run_id
    with pytest.raises(ConfigError, match="report_to"):
        load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{"type": "sft", "route": "openai",
                                                                      "report_to": "wandb"}]))
