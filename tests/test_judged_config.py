"""configs/judged.yaml: the offline judged example loads and its prompting rungs run, small."""

from __future__ import annotations

import csv

from ladder.config import load_experiment
from ladder.runner import run_experiment
from tests.conftest import REPO


def test_the_judged_example_runs_offline_with_a_held_out_metric(tmp_path):
    exp = load_experiment(REPO / "configs" / "judged.yaml",
                          [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
                           "subsample.n=20", "stages.3.n=2"])
    assert exp.extra_metrics and exp.metric_label == "upbeat"
    rows = {r.stage: r for r in run_experiment(exp, only=["zero_shot", "few_shot", "best_of_n"])}
    assert all(r.metric.n == 20 and r.metric_name == "upbeat" for r in rows.values())
    assert rows["best_of_n"].selected_by_metric and not rows["few_shot"].selected_by_metric
    with open(tmp_path / "results" / "judged" / "summary.csv") as f:
        table = {r["stage"]: r for r in csv.DictReader(f)}
    assert table["best_of_n"]["selected_by_metric"] == "True" and table["zero_shot"]["not_downbeat"] != ""
    md = (tmp_path / "results" / "judged" / "summary.md").read_text()
    assert "best_of_n (selected by the metric)" in md and "held-out not_downbeat" in md
