"""The rl stage: real (tiny) GRPO/RLOO through trl on ladder-tiny, best-of-N beside it, the reward
hacking and collapse checks, and the RL-probability guard."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest

from ladder.config import load_experiment
from ladder.errors import ConfigError, LadderError
from ladder.runner import run_experiment
from ladder.stages.rl_checks import collapse_guard, degenerate, hacking, pearson
from ladder.store import read_json, read_jsonl
from tests.conftest import experiment

TINY = {"steps": 3, "generations": 4, "prompts_per_step": 2, "method": "full", "learning_rate": 1e-3}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_path() -> Path:
    from ladder.backends.hf import resolve_model_path

    return Path(resolve_model_path("ladder-tiny"))


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def rl_dir(tmp_path, name="rl") -> Path:
    return next((tmp_path / "results" / "t" / name).iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_rl_trains_with_finite_rewards_and_changes_the_weights(tmp_path, algorithm):
    stages = [{"type": "zero_shot"}, {"type": "rl", "algorithm": algorithm, **TINY}]
    results = run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=12, stages=stages)))
    rl = results[-1]
    run = rl_dir(tmp_path)
    # Training happened, every logged reward is a finite number, and the curves are per step.
    curves = rl.extra.curves
    rewards = curves["rl_reward"]["y"]["reward (mean over rollouts)"]
    assert curves["rl_reward"]["x"] == [1, 2, 3] and len(rewards) == 3
    assert all(math.isfinite(r) for r in rewards)
    assert all(math.isfinite(k) for k in curves["rl_kl"]["y"]["KL to the starting policy"])
    assert all(v > 0 for v in curves["rl_length"]["y"]["completion tokens (mean)"])
    rollouts = read_jsonl(run / "rollouts.jsonl")
    assert len(rollouts) == 3 * TINY["generations"] * TINY["prompts_per_step"]
    assert all(math.isfinite(r["reward"]) and r["reward"] in (0.0, 1.0) for r in rollouts)
    assert sorted({r["step"] for r in rollouts}) == [1, 2, 3]  # each rollout knows its optimizer step
    # The weights moved, and the saved policy is marked as one.
    before, after = weights(tiny_path()), weights(run / "model")
    assert any(not before[k].equal(after[k]) for k in before)
    assert read_json(run / "model" / "ladder_training.json")["policy"] == "rl"
    checkpoints = list((run / "checkpoints").glob("checkpoint-*"))  # each one is a policy, marked as one
    assert checkpoints and all(read_json(c / "ladder_training.json")["policy"] == "rl" for c in checkpoints)
    # Best-of-N with the same reward ran first, on the same examples, and is compared pairwise.
    bon = rl.extra.best_of_n
    assert bon["n"] == TINY["generations"] and bon["metric"]["n"] == 12 and set(bon["scores"]) == \
        {r["id"] for r in read_jsonl(run / "samples.jsonl")}
    assert bon["diff"]["n"] == 12
    names = {g.name for g in rl.guards}
    assert {"versus_best_of_n", "reward_collapse", "rl_probabilities"} <= names
    assert rl.metric.n == 12 and rl.extra.model["name"] == str((run / "model").resolve())
    # The table carries best-of-N beside the rl row.
    with open(tmp_path / "results" / "t" / "summary.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["stage"] == "rl")
    # Picked by the task metric on the test answers, that line is an oracle; the rl row is not.
    assert row["oracle"] == "False" and bon["oracle"] is True
    assert row["baseline"] == f"best-of-{TINY['generations']}, same reward (oracle)" and float(row["baseline_value"]) == \
        pytest.approx(bon["metric"]["value"], abs=1e-6)


@pytest.mark.slow
def test_rl_rerun_reuses_everything_and_a_later_stage_uses_the_policy(tmp_path, monkeypatch):
    stages = [{"type": "rl", **TINY}, {"type": "zero_shot", "name": "after_rl", "model": {"from_stage": "rl"}}]
    path = experiment(tmp_path, "ladder-tiny", n_test=8, stages=stages)
    first = run_experiment(load_experiment(path))
    import ladder.training.rl_local as rl_local

    monkeypatch.setattr(rl_local, "train", lambda *a, **k: pytest.fail("trained again"))
    again = run_experiment(load_experiment(path))
    assert [r.metric.value for r in again] == [r.metric.value for r in first]
    assert first[1].metric.value == first[0].metric.value  # the same greedy policy, asked the same


def test_probability_metric_on_an_rl_policy_is_refused_at_load(tmp_path):
    for stages in ([{"type": "rl"}],
                   [{"type": "rl", "skip": "later"}, {"type": "zero_shot", "model": {"from_stage": "rl"}}]):
        path = experiment(tmp_path, "ladder-tiny", stages=stages, metric="choice_prob")
        with pytest.raises(ConfigError) as err:
            load_experiment(path)
        text = str(err.value)
        assert "RL-trained policy" in text and "calibrated" in text and "choice_prob" in text
        assert "top-1" in text
    # The same metric is fine on a model that was not RL-trained, and the rl stage fine with choice.
    load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{"type": "zero_shot"}], metric="choice_prob"))
    load_experiment(experiment(tmp_path, "ladder-tiny", stages=[{"type": "rl"}], metric="choice"))


def test_probability_metric_on_an_rl_model_folder_is_refused_at_run(tmp_path):
    """A path straight to an RL policy's folder (not `from_stage`) is caught by its marker."""
    policy = tmp_path / "policy"
    shutil.copytree(tiny_path(), policy)
    (policy / "ladder_training.json").write_text('{"policy": "rl"}')
    path = experiment(tmp_path, policy, stages=[{"type": "zero_shot"}], metric="choice_prob")
    with pytest.raises(LadderError) as err:
        run_experiment(load_experiment(path))
    assert "RL-trained policy" in str(err.value) and "calibrated" in str(err.value)
    assert not list((tmp_path / "results" / "t").glob("zero_shot/*/samples.jsonl"))


def test_every_rl_checkpoint_is_marked_and_refused_a_probability_metric(tmp_path):
    """trl saves checkpoint-N folders the user can name as a model: the callback the rl trainer
    runs marks each one on save, so a checkpoint is refused like the final policy."""
    from types import SimpleNamespace

    from ladder.training.rl_local import MarkCheckpoints

    out = tmp_path / "results" / "t" / "rl" / "run" / "checkpoints"
    ckpt = out / "checkpoint-8"
    shutil.copytree(tiny_path(), ckpt)  # what a full-weights checkpoint holds, less the trainer state
    MarkCheckpoints("grpo").on_save(SimpleNamespace(output_dir=str(out)),
                                    SimpleNamespace(global_step=8, is_world_process_zero=True), None)
    assert read_json(ckpt / "ladder_training.json") == {"policy": "rl", "algorithm": "grpo", "checkpoint": True,
                                                        "step": 8}
    path = experiment(tmp_path, ckpt, stages=[{"type": "zero_shot"}], metric="choice_prob")
    with pytest.raises(LadderError) as err:
        run_experiment(load_experiment(path))
    assert "RL-trained policy" in str(err.value) and "checkpoint-8" in str(err.value)


def test_choice_prob_reads_the_models_probabilities(tmp_path):
    results = run_experiment(load_experiment(
        experiment(tmp_path, "ladder-tiny", n_test=10, stages=[{"type": "zero_shot"}], metric="choice_prob")))
    m = results[0].metric
    assert m.n == 10 and 0 < m.value < 1 and m.ci_low < m.value < m.ci_high
    recs = read_jsonl(next((tmp_path / "results" / "t" / "zero_shot").iterdir()) / "samples.jsonl")
    assert all(r["samples"][0]["extracted"] in ("positive", "negative", "neutral") for r in recs)


def test_a_probability_metric_cannot_be_a_reward(tmp_path):
    stages = [{"type": "rl", "reward": "choice_prob"}]
    with pytest.raises(ConfigError, match="cannot rank or reward samples"):
        run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages)))
    assert not list((tmp_path / "results" / "t").glob("rl/*/samples.jsonl"))


def test_rl_config_rejects_owned_and_unknown_trainer_keys(tmp_path):
    for args, says in (({"beta": 0.1}, "set by the stage"), ({"no_such_key": 1}, "unknown trl")):
        path = experiment(tmp_path, "ladder-tiny", stages=[{"type": "rl", "trainer_args": args}])
        with pytest.raises(ConfigError, match=says):
            load_experiment(path)


# -- reward hacking, collapse --------------------------------------------------------------------


def test_degenerate_samples():
    assert degenerate("   ", 8) == "empty"
    assert degenerate("yes yes yes yes yes yes yes", 8) == "repeated"
    assert degenerate("ha" * 20, 8) == "repeated"
    assert degenerate("a", 20) == "very short"
    assert degenerate("positive", 8) is None
    assert degenerate("The food was great and the staff were kind.", 8) is None


def test_hacking_warns_on_length_and_degenerate_high_reward():
    # Reward grows with length: a PM that pays for length.
    pool = [(n / 10, n, "word " * n) for n in range(1, 40)]
    out = hacking(pool, ["a good answer"], "pool")
    assert out["reward_length_corr"] > 0.9 and [g.name for g in out["guards"]][0] == "reward_length"
    # The highest rewards go to empty text.
    pool = [(1.0, 0, "")] * 10 + [(0.2, 5, "a real answer here")] * 90
    out = hacking(pool, ["a real answer"], "pool")
    assert out["top_reward_degenerate"] == 1.0 and "degenerate_reward" in {g.name for g in out["guards"]}
    # Honest rewards: no warning.
    pool = [(float(i % 2), 2, ["positive", "negative"][i % 2]) for i in range(50)]
    assert hacking(pool, ["positive", "negative"], "pool")["guards"] == []


def test_collapse_guard_and_pearson():
    assert collapse_guard([{"reward": r} for r in (0.6, 0.7, 0.5, 0.2, 0.1, 0.0, 0.0, 0.0)]).level == "warn"
    assert collapse_guard([{"reward": r} for r in (0.5, 0.6, 0.6, 0.7, 0.8, 0.8, 0.9, 0.9)]).level == "ok"
    assert collapse_guard([{"reward": 0.5}]).level == "info"
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None


# `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate 1.15 runs several CPU
# processes only under mpirun; ladder refuses that command line). --multi_gpu is torchrun underneath,
# and with no GPU visible trl trains on the CPU over gloo: two real ranks, as on two GPUs.
TWO_PROCESSES = "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no " \
                "--dynamo_backend no"


@pytest.mark.slow
def test_rl_under_accelerate_launch_with_two_processes(tmp_path):
    tiny = {**TINY, "steps": 2}
    stages = [{"type": "rl", **tiny, "launch": TWO_PROCESSES}]
    rl = run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=6, stages=stages)))[-1]
    run = rl_dir(tmp_path)
    marker = read_json(run / "model" / "ladder_training.json")
    assert marker["policy"] == "rl" and marker["processes"] == 2 and marker["steps"] == 2
    checkpoints = list((run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and all(read_json(c / "ladder_training.json")["policy"] == "rl" for c in checkpoints)
    # Both ranks' completions were rewarded in the stage's process and logged once each: the step's
    # prompts_per_step × generations, split over the two ranks, not doubled by them.
    rollouts = read_jsonl(run / "rollouts.jsonl")
    assert len(rollouts) == 2 * tiny["generations"] * tiny["prompts_per_step"]
    assert sorted({r["step"] for r in rollouts}) == [1, 2]
    rewards = rl.extra.curves["rl_reward"]["y"]["reward (mean over rollouts)"]
    for step, logged in zip([1, 2], rewards):  # trl's logged mean is over both ranks' rewards
        mine = [r["reward"] for r in rollouts if r["step"] == step]
        assert logged == pytest.approx(sum(mine) / len(mine))
    # Best-of-N ran before training and the hacking checks read the launched run's rollouts.
    assert rl.extra.best_of_n["n"] == tiny["generations"] and rl.extra.best_of_n["diff"]["n"] == 6
    assert rl.extra.training["late_rollouts"]["samples"] > 0
    assert {"versus_best_of_n", "reward_collapse", "rl_probabilities"} <= {g.name for g in rl.guards}
    with open(tmp_path / "results" / "t" / "summary.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["stage"] == "rl")
    assert row["baseline"].startswith(f"best-of-{tiny['generations']}") and int(row["n"]) == 6


def test_the_same_reward_best_of_n_is_an_oracle_only_where_the_reward_reads_gold_answers():
    # configs/redteam.yaml: reward = the task metric, which scores the target's reply and reads no
    # gold answer (target: null): its best-of-8 row was marked "(oracle): reads the test examples'
    # gold answers". The quickstart's metric (choice) does read them: an oracle there.
    from ladder.config import load_experiment
    from ladder.stages.rl import baseline_is_oracle

    for name, oracle in (("redteam", False), ("quickstart", True)):
        exp = load_experiment(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
        (rl,) = [s for s in exp.stages if s.type == "rl"]
        assert baseline_is_oracle(rl, exp.metric) is oracle, name
