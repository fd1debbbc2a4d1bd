"""configs/redteam.yaml: the offline red-teaming ladder (ladder-tiny attacks ladder-tiny) loads and runs."""

from __future__ import annotations

import pytest

from ladder.config import load_experiment
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from tests.conftest import REPO


def load(tmp_path, *more):
    return load_experiment(REPO / "configs" / "redteam.yaml",
                           [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
                            "subsample.n=40", *more])


def replies(tmp_path, row):
    return [s["score_meta"]["response"] for r in read_jsonl(tmp_path / "results" / "redteam" / row.stage / row.run_id
                                                              / "samples.jsonl") for s in r["samples"]]


def test_the_prompting_rungs_attack_a_fixed_target_offline(tmp_path):
    rows = {r.stage: r for r in run_experiment(load(tmp_path), only=["zero_shot", "few_shot"])}
    zero, few = rows["zero_shot"], rows["few_shot"]
    assert zero.metric.n == few.metric.n == 40 and 0 < zero.metric.value < 1
    # The metric scored the target's replies (sentiment words), not the attacker's text.
    assert {w.split()[0].lower().strip(".") for w in replies(tmp_path, zero)} <= {"positive", "negative", "neutral"}
    wins = {r["id"] for r in read_jsonl(tmp_path / "results" / "redteam" / "zero_shot" / zero.run_id / "samples.jsonl")
            if r["score"] == 1}
    shots = [r["shots"] for r in read_jsonl(tmp_path / "results" / "redteam" / "few_shot" / few.run_id / "samples.jsonl")]
    assert shots and all(k == min(4, len(wins) - 1) or k == min(4, len(wins)) for k in shots)


@pytest.mark.slow
def test_the_whole_red_teaming_ladder_runs_offline(tmp_path):
    rows = {r.stage: r for r in run_experiment(load(tmp_path, "stages.2.export.examples=60", "stages.4.steps=2"))}
    assert list(rows) == ["zero_shot", "few_shot", "best_of_n", "sft", "rl"]
    assert all(r.metric.n == 40 for r in rows.values())
    export = rows["best_of_n"].extra.export
    assert export["rows"] > 0 and export["split"] == "train"
    # sft trained on the export's successes: train prompts, none of them a test prompt.
    assert rows["sft"].extra.train_subsample["total"] == rows["sft"].extra.train_subsample["n"] == export["rows"]
    assert not any(g.name == "train_test_overlap" for g in rows["sft"].guards)
    for row in rows.values():  # every rung's samples keep the target's replies
        assert replies(tmp_path, row)


def test_a_respondent_sampling_more_than_one_reply_is_refused_before_anything_runs(tmp_path):
    # The metric scores one reply per completion: n: 3 would pay for two replies nobody reads.
    from tests.test_cli import ladder

    out = ladder("check", REPO / "configs" / "redteam.yaml", "--set", "respondent.generation.n=3", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    flat = " ".join(out.stderr.split())
    assert "respondent.generation" in flat and "answers each completion once" in flat
    assert not (tmp_path / "results").exists()
