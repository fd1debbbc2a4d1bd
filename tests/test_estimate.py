"""Training steps and a rough time for sft/rl, said by `ladder check` and, for a long training,
warned about before the stage starts."""

from __future__ import annotations

import json

from ladder.config import load_experiment
from ladder.estimate import LONG_STEPS, long_training, training_estimate
from ladder.runner import prepare
from tests.conftest import experiment, make_rows, write_jsonl
from tests.test_cli import ladder

STAGES = [{"type": "zero_shot"}, {"type": "sft", "train_subsample": "all"}, {"type": "rl", "steps": 30}]


def _plan(tmp_path, model, **kw):
    path = experiment(tmp_path, model, stages=STAGES, **kw)
    exp = load_experiment(path)
    return exp, prepare(exp)


def test_steps_are_what_the_stage_gives_trl(tmp_path, random_model):
    exp, plan = _plan(tmp_path, random_model, n_train=100)
    sft, rl = exp.stages[1], exp.stages[2]
    est = training_estimate(sft, plan.task, plan.resolve(sft, planning=True).model, exp.base_dir)
    assert est["steps"] == 7 and "100 rows ÷ batch 16 × 1 epoch" in est["how"]  # ceil(100 / 16)
    assert not est["long"] and est["seconds"] > 0 and "floor" in est["basis"]  # not ladder-tiny: a floor
    model = plan.resolve(sft, planning=True).model
    assert training_estimate(sft.model_copy(update={"epochs": 3.0, "batch_size": 8}), plan.task, model)["steps"] \
        == 39  # ceil(100 / 8) × 3
    assert training_estimate(sft.model_copy(update={"max_steps": 5}), plan.task, model)["steps"] == 5
    est = training_estimate(rl, plan.task, plan.resolve(rl, planning=True).model)
    assert est["steps"] == 30 and "1,920 rollouts" in est["how"]  # 30 × 8 prompts × 8 generations
    assert training_estimate(exp.stages[0], plan.task, plan.resolve(exp.stages[0], planning=True).model) is None
    assert not long_training(plan, exp.stages)


def test_a_large_train_split_is_flagged_by_check_and_at_run_start(tmp_path, random_model):
    n = 20_000
    exp, plan = _plan(tmp_path, random_model, n_train=n)
    steps = -(-n // 16)
    assert steps > LONG_STEPS
    guards = long_training(plan, exp.stages)
    assert [g.name for g in guards] == ["long_training"] and f"{steps:,} steps" in guards[0].message
    assert "max_steps" in guards[0].message  # says what to do about it
    assert not long_training(plan, exp.stages, finished=lambda plan, stage: "done earlier")  # trains nothing
    # By default the stage trains on a 4,000-row train_subsample: 250 steps, nothing to warn about.
    assert not long_training(plan, [exp.stages[1].model_copy(update={"train_subsample": 4000})])

    out = ladder("check", tmp_path / "exp.yaml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sft = next(s for s in json.loads(out.stdout)["stages"] if s["type"] == "sft")
    assert sft["training"]["steps"] == steps and "long_training" not in sft["training"]["text"]
    assert f"{steps:,} steps" in sft["training"]["warning"]
    out = ladder("check", tmp_path / "exp.yaml", cwd=tmp_path)
    assert f"sft: {steps:,} training steps ({n:,} rows ÷ batch 16 × 1 epoch), ≈ " in out.stdout
    assert "rough:" in out.stdout and "warn long_training: stage sft trains" in out.stdout
    assert "rl: 30 training steps" in out.stdout


def test_sft_data_written_by_an_earlier_stage_has_no_step_count_yet(tmp_path, random_model):
    exp, plan = _plan(tmp_path, random_model)
    sft = exp.stages[1].model_copy(update={"data": "results/t/best_of_n/sft.jsonl"})
    est = training_estimate(sft, plan.task, plan.resolve(sft, planning=True).model, exp.base_dir)
    assert est["steps"] is None and est["seconds"] is None and "written by an earlier stage" in est["how"]
    write_jsonl(tmp_path / sft.data, [{"prompt": r["text"], "completion": r["label"]} for r in make_rows(40)])
    assert training_estimate(sft, plan.task, plan.resolve(sft, planning=True).model, exp.base_dir)["steps"] == 3


def test_run_warns_before_the_long_stage_starts(tmp_path, random_model, monkeypatch):
    import io

    from rich.console import Console

    import ladder.runner
    from ladder.runner import run_experiment

    path = experiment(tmp_path, random_model, n_train=20_000, n_test=20,
                      stages=[{"type": "zero_shot"}, {"type": "sft", "train_subsample": "all"}])
    said = io.StringIO()
    monkeypatch.setattr(ladder.runner, "console", Console(file=said, width=300, soft_wrap=True))
    ran = []
    # stop after zero_shot: the warning about sft must already have been said
    run_experiment(load_experiment(path), after=lambda stage, result: ran.append(stage.name) and False)
    assert ran == ["zero_shot"]
    text = said.getvalue()
    assert "warn long_training: stage sft trains 1,250 steps" in text
    assert text.index("long_training") < text.index("zero_shot choice =")
