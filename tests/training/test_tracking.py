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
from ladder.training import TRACKER_MODULES, tracking_args
from ladder.training.rows import TrainRow
from ladder.types import Example, Message
from tests.conftest import experiment

BASE = SimpleNamespace(config=SimpleNamespace(model_dump=lambda mode=None: {"backend": "hf", "name": "m"}),
                       uses_chat_template=False, context_window=512)


@pytest.fixture
def trackers_installed(monkeypatch):
    """As if every tracker's package were installed (tensorboard and wandb are not, here)."""
    real = importlib.util.find_spec
    modules = {m for ms in TRACKER_MODULES.values() for m in ms}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: SimpleNamespace(name=name) if name in modules else real(name, *a))


def test_the_stages_accept_report_to(trackers_installed):
    assert SFTConfig(report_to="wandb").report_to == ["wandb"]
    assert RLConfig(report_to=["tensorboard", "wandb"]).report_to == ["tensorboard", "wandb"]
    assert RewardModelConfig(data="p.jsonl", report_to="none").report_to == []
    assert SFTConfig().report_to == []
    with pytest.raises(ValueError, match="integration names"):
        SFTConfig(report_to=[""])
    with pytest.raises(ValueError, match="use its own keys .*report_to"):
        SFTConfig(trainer_args={"report_to": "wandb"})  # one place to say it


def test_report_to_reaches_the_trainer_arguments(tmp_path, monkeypatch, trackers_installed):
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


def test_report_to_does_not_change_the_run_id(tmp_path, trackers_installed):
    from ladder.runner import prepare

    stages = [{"type": "sft", "name": "s", "route": "local"}]
    quiet = load_experiment(experiment(tmp_path, "ladder-tiny", stages=stages))
    loud = load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{**stages[0], "report_to": ["wandb"]}]))
    assert prepare(quiet).resolve(quiet.stages[0]).run_id == prepare(loud).resolve(loud.stages[0]).run_id
    with pytest.raises(ConfigError, match="report_to"):
        load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{"type": "sft", "route": "openai",
                                                                      "report_to": "wandb"}]))


def test_a_tracker_whose_package_is_missing_is_refused_at_load(tmp_path, monkeypatch):
    """report_to: tensorboard without the tensorboard package: refused when the YAML loads, naming
    the package and the extra, not a transformers traceback once training starts."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    path = experiment(tmp_path, "ladder-tiny", stages=[{"type": "sft", "report_to": "tensorboard"}])
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    text = " ".join(str(err.value).split())
    assert "stages.0.report_to" in text and "needs the tensorboard package" in text
    assert "pip install tensorboard (in ladder's train extra: pip install 'ladder[train]')" in text
    assert not (tmp_path / "results").exists()


def test_the_readme_tensorboard_example_works_from_the_readme_install():
    """The README installs ladder with its train extra (make quickstart / make test): that extra
    must bring the package its `report_to: tensorboard` example needs."""
    import tomllib

    from tests.conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.split(">")[0].split("=")[0].strip() == "tensorboard"
               for dep in project["optional-dependencies"]["train"])
    assert ".[train" in (REPO / "Makefile").read_text()
