"""What a stage returns is typed (ladder/result_sections.py): `StageResult.stats` is a `Stats`,
`extra` an `Extra` of named sections plus one free-form `custom` section for plugins — and every
metrics.json written before these types existed reads back and writes out unchanged.

tests/data/metrics_json/ holds the metrics.json files the quickstart wrote before this change
(ladder 20ca53a: zero_shot, few_shot, best_of_n, sft, rl) and the summary.csv columns it wrote
for them (all but the paired differences, which read samples.jsonl)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ladder.config import StageConfig
from ladder.result_sections import Extra, RecordsDigest, Stats
from ladder.stages.zero_shot import ZeroShot
from ladder.store import write_json
from ladder.table import row_of
from ladder.types import Baseline, MetricValue, StageResult
from tests.conftest import experiment

OLD = Path(__file__).parent / "data" / "metrics_json"
STAGES = ["zero_shot", "few_shot", "best_of_n", "sft", "rl"]


@pytest.mark.parametrize("stage", STAGES)
def test_an_older_metrics_json_reads_back_typed_and_writes_out_byte_identical(stage, tmp_path):
    text = (OLD / f"{stage}.json").read_text()
    r = StageResult.from_dict(json.loads(text))
    assert isinstance(r.stats, Stats) and isinstance(r.extra, Extra)
    assert isinstance(r.stats.records, RecordsDigest) and r.stats.records.count == r.metric.n == 300
    assert r.stats.errors == 0 and r.stats.chance == pytest.approx(1 / 3) and r.stats.resumed_examples is not None
    assert r.extra.custom == {}  # every key these stages write is a declared section
    write_json(tmp_path / "metrics.json", r.to_dict())
    assert (tmp_path / "metrics.json").read_text() == text


def test_the_sections_the_training_and_selecting_stages_wrote_are_attributes():
    load = lambda s: StageResult.from_dict(json.loads((OLD / f"{s}.json").read_text()))  # noqa: E731
    bon, sft, rl = load("best_of_n"), load("sft"), load("rl")
    assert bon.extra.selector["oracle"] is True and [p["k"] for p in bon.extra.curve][0] == 1
    assert bon.stats.scorer_cost_usd == 0.0 and bon.stats.scorer_prompt_tokens == 0
    assert sft.products.model["backend"] == "hf" and sft.stats.train_examples == sft.extra.train_subsample["n"]
    assert set(sft.extra.curves) >= {"train_loss"} and sft.extra.choice_loss is not None
    assert rl.extra.policy == "rl" and rl.extra.training["steps"] == 50
    b = rl.extra.baseline
    assert isinstance(b, Baseline) and b.oracle and b.metric.n == 300 and isinstance(b.diff, MetricValue)
    assert rl.baseline is b and {c.name for c in rl.curves} >= {"rl_reward", "best_of_n.curve"}


def test_summary_csv_columns_from_older_results_are_unchanged():
    with open(OLD / "summary.csv") as f:
        want = list(csv.DictReader(f))
    for row in want:
        got = row_of(StageResult.from_dict(json.loads((OLD / f"{row['stage']}.json").read_text())))
        # As csv.DictWriter writes them (a cell is its str; None and "" are empty).
        cells = {k: "" if v is None else str(v) for k, v in got.items() if k in row}
        assert cells == row


def test_an_unknown_stats_key_is_refused_naming_it():
    m = MetricValue(0.5, 0.4, 0.6, 10)
    with pytest.raises(TypeError, match="'tokens_per_pass'.*extra.custom"):
        StageResult("s", "mine", "r", "choice", m, [], {"errors": 0, "tokens_per_pass": 3})
    r = StageResult("s", "mine", "r", "choice", m)
    with pytest.raises(AttributeError):
        r.stats.train_exampels = 12  # a misspelt section is no new key nothing reads
    with pytest.raises(AttributeError):
        r.extra.trainig = {}


def test_an_older_metrics_json_with_a_stats_key_this_version_does_not_know_still_loads():
    d = json.loads((OLD / "zero_shot.json").read_text())
    d["stats"]["tokens_per_second"] = 12.5  # e.g. written by a newer ladder
    assert StageResult.from_dict(d).stats.examples == 300


def test_a_plugin_extra_round_trips_through_metrics_json(tmp_path):
    r = StageResult("s", "mine", "r", "choice", MetricValue(0.5, 0.4, 0.6, 10))
    r.extra.custom["passes"] = {"draft": 0.6, "revised": 0.7}
    r.extra.training = {"steps": 3}
    write_json(tmp_path / "metrics.json", r.to_dict())
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["extra"] == {"training": {"steps": 3}, "passes": {"draft": 0.6, "revised": 0.7}}
    back = StageResult.from_dict(on_disk)
    assert back.extra.custom == {"passes": {"draft": 0.6, "revised": 0.7}} and back.extra.training == {"steps": 3}
    assert back.to_dict() == r.to_dict()


def test_a_custom_section_may_not_shadow_a_declared_one():
    r = StageResult("s", "mine", "r", "choice", MetricValue(0.5, 0.4, 0.6, 10))
    r.extra.custom["training"] = {"steps": 3}
    with pytest.raises(ValueError, match="'training'.*extra.training"):
        r.to_dict()


class Passes(ZeroShot):
    """A plugin stage that reports a section of its own beside its number."""

    Config = StageConfig  # its type is its module:attr path

    def run(self, ctx):
        result = super().run(ctx)
        result.extra.custom["passes"] = {"count": 1, "examples": result.stats.examples}
        return result


def test_a_plugin_stage_extra_reaches_metrics_json_and_reads_back(tmp_path, random_model):
    from ladder.config import load_experiment
    from ladder.evidence import load_results
    from ladder.runner import run_experiment

    exp = load_experiment(experiment(tmp_path, random_model, n_test=8,
                                     stages=[{"type": "tests.test_result_sections:Passes", "name": "p"}]))
    (result,) = run_experiment(exp)
    assert result.extra.custom["passes"] == {"count": 1, "examples": 8}
    (back,) = load_results(tmp_path / "results" / "t")
    assert back.extra.custom == {"passes": {"count": 1, "examples": 8}} and back.stats.examples == 8
