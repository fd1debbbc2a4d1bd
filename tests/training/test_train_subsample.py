"""train_subsample: the training rows a training stage uses — a seeded draw kept in data order, said
by a guard when it leaves rows out, recorded in metrics.json and manifest.json, part of the run id."""

from __future__ import annotations

import io

import pytest

from ladder.config import load_experiment
from ladder.estimate import training_estimate
from ladder.runner import prepare, run_experiment
from ladder.stages.sft import SFTConfig
from ladder.store import read_json, read_jsonl
from ladder.training import DEFAULT_TRAIN_SUBSAMPLE, draw_train
from tests.conftest import experiment

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_draw_is_seeded_kept_in_order_and_said_only_when_it_leaves_rows_out():
    rows = list(range(100))
    chosen, record, guards = draw_train(rows, SFTConfig(train_subsample=10), 3, lambda r: r)
    assert len(chosen) == 10 and chosen == sorted(chosen)  # data order
    assert draw_train(rows, SFTConfig(train_subsample=10), 3, lambda r: r)[0] == chosen  # same seed, same rows
    assert draw_train(rows, SFTConfig(train_subsample=10), 4, lambda r: r)[0] != chosen
    assert {k: record[k] for k in ("train_subsample", "total", "n", "seed")} == \
        {"train_subsample": 10, "total": 100, "n": 10, "seed": 3}
    assert record["digest"] == draw_train(rows, SFTConfig(train_subsample=10), 3, lambda r: r)[1]["digest"]
    assert [g.name for g in guards] == ["train_subsample"] and guards[0].level == "info"
    assert guards[0].message == ("trained on 10 of 100 train examples (train_subsample: 10, seed 3); "
                                 "set train_subsample: all to use every row")

    # The default says it is the default; a split no bigger than it is used whole, with no guard.
    assert SFTConfig().train_subsample == DEFAULT_TRAIN_SUBSAMPLE == 4000
    big = list(range(67_349))
    chosen, record, guards = draw_train(big, SFTConfig(), 0, lambda r: r)
    assert len(chosen) == 4000 and record["total"] == 67_349
    assert guards[0].message == ("trained on 4,000 of 67,349 train examples (train_subsample: default); "
                                 "set train_subsample: all to use every row")
    for cfg in (SFTConfig(), SFTConfig(train_subsample="all")):
        chosen, record, guards = draw_train(rows, cfg, 0, lambda r: r)
        assert chosen == rows and record["n"] == record["total"] == 100 and not guards
    chosen, record, guards = draw_train(big, SFTConfig(train_subsample="all"), 0, lambda r: r)
    assert len(chosen) == 67_349 and not guards


def test_check_counts_the_subsampled_rows(tmp_path, random_model):
    path = experiment(tmp_path, random_model, n_train=5000, stages=[{"type": "sft"}, {"type": "rl", "steps": 5}])
    exp = load_experiment(path)
    plan = prepare(exp)
    sft, rl = exp.stages
    est = training_estimate(sft, plan.task, plan.resolve(sft, planning=True).model, exp.base_dir)
    assert est["steps"] == 250 and "train_subsample: 4,000 of 5,000 rows ÷ batch 16" in est["how"]
    whole = sft.model_copy(update={"train_subsample": "all"})
    est = training_estimate(whole, plan.task, plan.resolve(sft, planning=True).model, exp.base_dir)
    assert est["steps"] == 313 and "5,000 rows ÷ batch 16" in est["how"]  # ceil(5000 / 16)
    est = training_estimate(rl, plan.task, plan.resolve(rl, planning=True).model, exp.base_dir)
    assert "prompts from train_subsample: 4,000 of 5,000 train prompts" in est["how"]


@pytest.mark.slow
def test_sft_trains_on_the_subsample_and_the_manifest_records_it(tmp_path, random_model, monkeypatch):
    from rich.console import Console

    import ladder.progress

    said = io.StringIO()
    monkeypatch.setattr(ladder.progress, "console", Console(file=said, width=300, soft_wrap=True))
    stages = [{"type": "sft", "batch_size": 8, "max_steps": 1, "curves": False, "train_subsample": 10}]
    path = experiment(tmp_path, random_model, n_train=60, n_test=8, stages=stages)
    result = run_experiment(load_experiment(path))[0]
    folder = tmp_path / "results" / "t"
    run_dir = folder / "sft" / result.run_id

    # Trained on 10 of the 60 train rows, in data order, and said so before training.
    trained = read_jsonl(run_dir / "train.jsonl")
    train = [r["text"] for r in read_jsonl(tmp_path / "data" / "train.jsonl")]
    texts = [next(t for t in train if t in str(r["prompt"])) for r in trained]
    assert len(trained) == 10 and [train.index(t) for t in texts] == sorted(train.index(t) for t in texts)
    assert "info sft: train_subsample: trained on 10 of 60 train examples (train_subsample: 10, seed 0)" \
        in said.getvalue()
    assert result.stats.train_examples == 10
    assert next(g for g in result.guards if g.name == "train_subsample").level == "info"

    # metrics.json and manifest.json record the draw: rows there were, rows used, seed, digest.
    record = read_json(run_dir / "metrics.json")["extra"]["train_subsample"]
    assert {k: record[k] for k in ("train_subsample", "total", "n", "seed")} == \
        {"train_subsample": 10, "total": 60, "n": 10, "seed": 0}
    manifest = read_json(folder / "manifest.json")
    entry = next(s for s in manifest["stages"] if s["name"] == "sft")
    assert entry["run_id"] == result.run_id and entry["train_subsample"] == record
    assert len(record["digest"]) == 64

    # A re-run reuses the stage and still records the draw; another subsample is another run, while
    # save_every_minutes (when checkpoints are written) leaves the run id alone.
    again = run_experiment(load_experiment(path))[0]
    assert again.run_id == result.run_id
    assert next(s for s in read_json(folder / "manifest.json")["stages"])["train_subsample"] == record
    plan = prepare(load_experiment(path))
    stage = plan.experiment.stages[0]
    assert plan.resolve(stage).run_id == result.run_id
    assert plan.resolve(stage.model_copy(update={"save_every_minutes": 0.5})).run_id == result.run_id
    assert plan.resolve(stage.model_copy(update={"train_subsample": 11})).run_id != result.run_id
