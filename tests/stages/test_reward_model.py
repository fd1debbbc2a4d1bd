"""The reward_model stage: trl RewardTrainer on preference pairs, held-out pairwise accuracy with a
CI, hh-rlhf transcripts, and the trained PM as the pm scorer of best_of_n and rl."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import replace

import pytest

from ladder.config import load_experiment
from ladder.errors import ConfigError, DataError
from ladder.runner import run_experiment
from ladder.stages.reward_model import pair, read_pairs, transcript
from ladder.store import read_jsonl
from tests.conftest import LABELS, experiment, make_rows


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    """The review's right sentiment is preferred to a wrong one: learnable, and not by length alone
    (chosen and rejected are both one label word)."""
    rng = random.Random(seed)
    out = []
    for row in make_rows(n, seed=seed):
        wrong = rng.choice([x for x in LABELS if x != row["label"]])
        out.append({"prompt": f"Review: {row['text']}", "chosen": row["label"], "rejected": wrong})
    return out


def write_pairs(path, rows, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_reward_model_beats_chance_and_serves_as_pm_scorer(tmp_path):
    write_pairs(tmp_path / "pairs.jsonl.gz", synthetic_pairs(600, seed=3), gz=True)
    stages = [
        {"type": "reward_model", "data": "pairs.jsonl.gz", "test_size": 0.25, "epochs": 2, "learning_rate": 1e-3},
        {"type": "best_of_n", "n": 4, "scorer": {"type": "pm", "from_stage": "reward_model", "reference": "neutral"}},
        {"type": "rl", "reward": {"type": "pm", "from_stage": "reward_model", "reference": "neutral"},
         "steps": 2, "generations": 4, "prompts_per_step": 2},
    ]
    results = run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=12, stages=stages)))
    rm, bon, rl = results
    assert rm.metric_name == "pairwise_accuracy" and rm.metric.n == 150
    assert rm.metric.value > 0.5 and rm.metric.ci_low > 0.5, rm.metric
    assert next(g for g in rm.guards if g.name == "beats_chance").level == "ok"
    assert rm.extra.training["train_pairs"] == 450
    # best_of_n scored its samples with the trained PM, against the reference, in (0, 1).
    assert bon.extra.selector["name"] == "pm" and 0 < bon.extra.selector["selected"]["value"] < 1
    # rl was rewarded by the same PM (LoRA, the default): PM probabilities in (0, 1), and its
    # best-of-4 ran with that reward — from best_of_n's cache, since both asked the same.
    rewards = rl.extra.curves["rl_reward"]["y"]["reward (mean over rollouts)"]
    assert len(rewards) == 2 and all(0 < r < 1 for r in rewards)
    assert rl.extra.best_of_n["reward"]["name"] == "pm" and rl.extra.best_of_n["generated"] == 0
    assert rl.extra.training["method"] == "lora" and rl.extra.training["trainable_params"] < \
        rl.extra.training["total_params"]


def test_hh_rlhf_transcripts_become_chat_messages():
    chosen = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.\n\nHuman: Why?\n\nAssistant: It could harm someone."
    assert transcript(chosen) == [
        {"role": "user", "content": "How do I pick a lock?"}, {"role": "assistant", "content": "I can't help with that."},
        {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "It could harm someone."}]
    p = pair({"chosen": chosen, "rejected": chosen.replace("It could harm someone.", "Sure, here's how.")})
    assert p["chosen"][:3] == p["rejected"][:3] and p["rejected"][-1]["content"] == "Sure, here's how."
    # Explicit prompts and plain texts are kept as they are.
    assert pair({"prompt": "Q?", "chosen": "a", "rejected": "b"})["chosen"] == [
        {"role": "user", "content": "Q?"}, {"role": "assistant", "content": "a"}]
    assert pair({"chosen": "good text", "rejected": "bad text"}) == {"chosen": "good text", "rejected": "bad text"}


def test_bad_preference_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 1 .* is not a preference pair"):
        read_pairs(bad, "stages.reward_model.data")
    with pytest.raises(DataError, match="does not exist"):
        read_pairs(tmp_path / "missing.jsonl", "stages.reward_model.data")


def test_pm_scorer_needs_a_model_or_a_reward_model_stage(tmp_path):
    stages = [{"type": "best_of_n", "n": 2, "scorer": {"type": "pm", "from_stage": "nowhere"}}]
    with pytest.raises(ConfigError, match="stage 'nowhere' is not an earlier stage"):
        load_experiment(experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages))
    stages = [{"type": "best_of_n", "n": 2, "scorer": {"type": "pm"}}]  # neither model nor from_stage
    with pytest.raises(ConfigError, match="exactly one of `model:`"):
        load_experiment(experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages))


@pytest.mark.parametrize("chat_template", ["auto", "none"])
def test_held_out_accuracy_through_the_scorers_own_path_is_the_rows_number(tmp_path, chat_template):
    """The pm scorer reads the held-out pairs' prompts and responses as it reads a task's prompt and
    a completion: the accuracy it gives by choosing the higher probability under the PM is the
    reward_model row's number, with a chat template and without one (where training once used a
    Human/Assistant transcript + EOS and scoring another format)."""
    from ladder.cache import Cache
    from ladder.runner import prepare
    from ladder.scorers import build_scorer
    from ladder.types import Example

    instruction = "Classify the sentiment of the review."
    rows = make_rows(40, seed=5)
    pairs = [{"prompt": [{"role": "system", "content": instruction},
                         {"role": "user", "content": f"Review: {r['text']}"}],
              "chosen": r["label"], "rejected": LABELS[(LABELS.index(r["label"]) + 1) % 3]} for r in rows]
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    stages = [{"type": "reward_model", "data": "pairs.jsonl", "test_size": 0.5, "max_steps": 2, "batch_size": 4,
               "learning_rate": 1e-3}]
    model = {"backend": "hf", "name": "ladder-tiny", "chat_template": chat_template}
    path = experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages, model=model)
    (rm,) = run_experiment(load_experiment(path))
    assert rm.metric.n == 20
    calib = rm.extra.calibration
    assert calib["pairs"] == 20 and calib["accuracy"] == pytest.approx(rm.metric.value)
    assert any(g.name == "pm_calibration" and "mean confidence" in g.message for g in rm.guards)

    exp = load_experiment(path)
    plan = prepare(exp)
    resolved = replace(plan.resolve(exp.stages[0], planning=True), run_dir=tmp_path / "run", run_id="r")
    ctx = plan.context(resolved, Cache(tmp_path / "cache"))
    scorer = build_scorer({"type": "pm", "model": rm.extra.reward_model["name"]}, ctx)
    run_dir = tmp_path / "results" / "t" / "reward_model" / rm.run_id
    held_out = {r["id"]: r for r in read_jsonl(run_dir / "samples.jsonl")}
    wins = []
    for i, rec in held_out.items():
        row = rows[int(i)]
        ex = Example(i, {"text": row["text"]}, row["label"])
        assert [m.to_dict() for m in ctx.task.render(ex)] == pairs[int(i)]["prompt"]  # the same prompt
        chosen, rejected = scorer.score_batch([ex, ex], [pairs[int(i)]["chosen"], pairs[int(i)]["rejected"]])
        # The very rewards the row was computed from, not merely the same ranking.
        assert chosen.meta["reward"] == pytest.approx(rec["chosen_reward"], abs=1e-5)
        assert rejected.meta["reward"] == pytest.approx(rec["rejected_reward"], abs=1e-5)
        wins.append(1.0 if chosen.value > rejected.value else 0.5 if chosen.value == rejected.value else 0.0)
    assert sum(wins) / len(wins) == pytest.approx(rm.metric.value)


@pytest.mark.slow
def test_reward_model_under_accelerate_launch_with_two_processes(tmp_path):
    from tests.stages.test_rl import TWO_PROCESSES

    write_pairs(tmp_path / "pairs.jsonl", synthetic_pairs(40, seed=3))
    stages = [{"type": "reward_model", "data": "pairs.jsonl", "max_steps": 2, "batch_size": 4, "launch": TWO_PROCESSES}]
    rm = run_experiment(load_experiment(experiment(tmp_path, "ladder-tiny", n_test=4, stages=stages)))[0]
    assert rm.metric_name == "pairwise_accuracy" and rm.metric.n == 8  # scored in the stage's process
    training = rm.extra.training
    assert training["processes"] == 2 and training["steps"] == 2 and training["train_pairs"] == 32
    run = next((tmp_path / "results" / "t" / "reward_model").iterdir())
    assert (run / "reward_pairs.json").exists() and (run / "model" / "model.safetensors").exists()


def test_max_train_is_the_older_name_of_train_subsample():
    from ladder.stages.reward_model import RewardModelConfig

    assert RewardModelConfig(name="rm", data="p.jsonl", max_train=50).train_subsample == 50
    assert RewardModelConfig(name="rm", data="p.jsonl", max_train=None).train_subsample == "all"
    with pytest.raises(ValueError, match="keep only train_subsample"):
        RewardModelConfig(name="rm", data="p.jsonl", max_train=50, train_subsample=10)


@pytest.mark.parametrize("args, said", [({"learning_rate": 1e-4}, "learning_rate is set by the stage"),
                                        ({"no_such_key": 1}, "unknown trl RewardConfig key(s) no_such_key")])
def test_trainer_args_repeating_an_own_key_or_unknown_to_trl_are_refused(args, said):
    from pydantic import ValidationError

    from ladder.stages.reward_model import RewardModelConfig

    with pytest.raises(ValidationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        RewardModelConfig(name="pm", data="pairs.jsonl", trainer_args=args)
    assert RewardModelConfig(name="pm", data="pairs.jsonl", trainer_args={"center_rewards_coefficient": 0.01}).trainer_args
