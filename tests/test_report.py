"""`ladder report`: curves found in any reasonable `extra` shape, and the page as a person sees it
(headless Chromium: no console errors, no network, table and plots drawn, a screenshot saved)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from ladder.config import StageConfig, load_experiment
from ladder.report import curves_of, write
from ladder.runner import run_experiment

from ladder.stages.zero_shot import ZeroShot
from ladder.types import Extra, Guard
from tests.conftest import REPO, experiment
from tests.test_climb import ORACLE

# ---------------------------------------------------------------------------------------------
# Curves in `extra`


def test_documented_curve_shape():
    extra = {"curves": {"reward_vs_n": {"x": [1, 2, 4, 8], "y": {"selector": [0.1, 0.3, 0.5, 0.6],
                                                                 "metric": [0.4, 0.5, 0.6, 0.65]},
                                        "xlabel": "N", "ylabel": "score"},
                        "loss": {"x": [0, 1], "y": [2.0, 1.0], "hlines": {"chance": 1.0986}}}}
    bon, loss = curves_of(extra)
    assert bon.name == "reward_vs_n" and bon.x == [1, 2, 4, 8] and set(bon.series) == {"selector", "metric"}
    assert bon.xlabel == "N" and bon.ylabel == "score"
    assert loss.series == {"loss": [2.0, 1.0]} and loss.hlines == {"chance": 1.0986}


def test_tolerant_shapes_and_chance_line():
    extra = {
        "history": {"step": [0, 10, 20], "train_loss": [2.0, 1.5, 1.2], "test_accuracy": [0.3, 0.4, 0.5]},
        "chance_loss": math.log(3),
        "log": [{"step": 0, "reward": 0.1, "kl": 0.0}, {"step": 1, "reward": 0.3, "kl": 0.2}],
        "nested": {"deeper": {"k": [1, 2], "reward": [0.2, 0.4]}},
        "losses": [3.0, 2.0, 1.5],
        "model": {"backend": "hf", "name": "/tmp/ckpt"},           # not a curve
        "ragged": {"step": [0, 1, 2], "loss": [1.0, 0.5]},          # unequal lengths: loss by index
        "words": ["a", "b"], "one": [1.0], "flag": True,
    }
    curves = {c.name: c for c in curves_of(extra)}
    assert set(curves) == {"history", "log", "nested.deeper", "losses", "ragged.loss"}
    assert curves["ragged.loss"].x == [0, 1] and curves["ragged.loss"].hlines  # a loss: gets the chance line
    h = curves["history"]
    assert h.x == [0, 10, 20] and h.xlabel == "step" and set(h.series) == {"train_loss", "test_accuracy"}
    assert h.hlines == {"chance_loss": math.log(3)}  # a loss curve gets the chance line
    assert curves["log"].series == {"reward": [0.1, 0.3], "kl": [0.0, 0.2]} and curves["log"].hlines == {}
    assert curves["nested.deeper"].x == [1, 2] and curves["losses"].x == [0, 1, 2]


# What ladder/stages/best_of_n.py and ladder/stages/sft.py write into `extra` today.
SHAPES = {
    "best_of_n": {"curve": [{"k": k, "selector": 0.2 + 0.1 * i, "metric": 0.3 + 0.05 * i,
                             "kl_bound": math.log(k) - (k - 1) / k, "kl_pool": 0.5 * (math.log(k) - (k - 1) / k)}
                            for i, k in enumerate([1, 2, 4, 8, 16, 32])],
                  "selector": {"name": "choice", "oracle": True, "selected": {"value": 0.7, "ci_low": 0.6, "n": 40}},
                  "distinct_per_prompt": 3.2},
    "sft": {"model": {"backend": "hf", "name": "/tmp/ckpt"}, "training": {"route": "local", "steps": 30},
            "curves": {"train_loss": [[5, 2.1], [10, 1.6], [15, 1.3], [20, 1.2]],
                       "eval": [{"step": s, "epoch": s / 10, "test_loss": 1.4 - s / 100, "metric": 0.3 + s / 100}
                                for s in (0, 10, 20, 30)]},
            "choice_loss": {"choice_loss": 1.12, "choice_accuracy": 0.4, "chance_loss": math.log(3)}},
}


def test_the_shapes_best_of_n_and_sft_write():
    (bon,) = curves_of(SHAPES["best_of_n"])
    # The analytic KL is labelled as the bound it is, beside the exact KL over the pool.
    assert bon.x == [1, 2, 4, 8, 16, 32] and set(bon.series) == {
        "selector", "metric", "KL upper bound log k − (k−1)/k", "KL over the sample pool (exact)"}
    train, test = curves_of(SHAPES["sft"])
    assert train.x == [5, 10, 15, 20] and train.series == {"train_loss": [2.1, 1.6, 1.3, 1.2]}
    assert test.xlabel == "step" and set(test.series) == {"test_loss", "metric"}  # epoch is an axis, not a series
    assert train.hlines == test.hlines == {"chance_loss": math.log(3)}


# ---------------------------------------------------------------------------------------------
# A whole experiment: oracle prompting rungs plus stand-ins for best_of_n, sft and rl that record
# curves the way those stages do.


class CurvesConfig(StageConfig):
    type: str = "tests.test_report:Curves"
    as_type: str
    """The stage type this stand-in reports as."""


class Curves(ZeroShot):
    Config = CurvesConfig

    def run(self, ctx):
        result = super().run(ctx)
        result.type = self.config.as_type
        result.extra = Extra.from_dict({**result.extra.to_dict(), **SHAPES.get(result.type, {})})
        if result.type == "sft":
            result.guards.append(Guard("chance_loss", "warn", "test loss 1.12 is above chance 1.10", 1.12))
        elif result.type == "rl":  # rl is still being written: the documented shape
            result.extra.curves = {"reward_kl": {"x": list(range(8)), "xlabel": "step",
                                                    "y": {"reward": [0.1 * s for s in range(8)],
                                                          "kl": [0.02 * s * s for s in range(8)]}}}
        return result


STAGES = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2},
          *({"type": "tests.test_report:Curves", "name": t, "as_type": t} for t in ("best_of_n", "sft", "rl"))]


@pytest.fixture
def finished(tmp_path):
    exp = load_experiment(experiment(tmp_path, "unused", stages=STAGES, model=ORACLE))
    run_experiment(exp)
    return exp.results_path


def test_report_contents(finished):
    page = write(finished, atlas=False).read_text()
    for needle in ("best_of_n: curve", "sft: train_loss", "sft: eval", "rl: reward_kl", "chance_loss", "test loss 1.12 is above chance", "loss_above_chance",
                   "evaluate_more", "Δ zero_shot", "<script>", "Left out"):
        assert needle in page, needle
    assert "<script src" not in page and "<link" not in page  # plotly.js inlined; nothing fetched


chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                              reason="chromium not installed (Debian: apt-get install -y chromium; `make setup` does)")


@chromium
def test_report_renders_in_a_browser_without_errors(finished, tmp_path):
    pytest.importorskip("websocket", reason="pip install websocket-client (the dev extra has it)")
    from scripts.check_report import check_report

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "report", str(finished)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    page = finished / "report.html"
    shot = tmp_path / "report.png"
    seen, problems = check_report(page, finished, shot)
    assert problems == [] and seen.errors == [] and seen.requests == []
    # stage chart + best_of_n's curve, sft's train and eval curves, rl's curve + the atlas, all drawn
    assert seen.page["plots"] == seen.page["drawn"] == 6
    assert seen.page["rows"] == 5 and seen.page["points"] >= 5 * 40
    assert {"Stages", "Next steps", "Guard warnings", "Curves", "Samples", "Sample atlas"} <= set(seen.page["headings"])
    assert seen.inspected["all"]["total"] == 40  # the sample browser: one row per test example
    assert shot.stat().st_size > 50_000  # a real picture, not a blank page
    if os.environ.get("LADDER_SHOTS"):  # keep the screenshot for a person to look at
        shutil.copy(shot, os.environ["LADDER_SHOTS"])


@chromium
def test_sample_browser_filters_match_the_samples_on_disk(tmp_path):
    """3,000 examples (30 pages), stages that disagree and change: every filter's count in the
    browser equals the count made from samples.jsonl, and a training curve's step axis is linear.
    Then a record is taken out of a stage's samples.jsonl: the same page must now fail the check."""
    pytest.importorskip("websocket", reason="pip install websocket-client (the dev extra has it)")
    from scripts.check_report import check_report

    folder = browser_folder(tmp_path, n=3000)
    page = write(folder, atlas=False)
    seen, problems = check_report(page, folder)
    assert problems == []
    got = seen.inspected
    assert {k: got["all"][k] for k in ("total", "rows", "stages")} == {
        "total": 3000, "rows": 100, "stages": ["zero_shot", "best_of_n", "rl"]}
    assert 100 < got["wrong"]["total"] < 3000 and 0 < got["disagree"]["total"] < 3000
    assert 0 < got["changed:0:2"]["total"] < 3000 and max(v["ms"] for v in got.values()) < 1500
    (step_fig,) = [f for f in seen.page["axes"] if f["kind"] == "step"]
    assert step_fig["x"] == ["linear"]  # steps 1 … 60 spanned ≥ 16×: once drawn on a log axis
    samples = next((folder / "rl").glob("*/samples.jsonl"))
    lines = samples.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if json.loads(line)["score"] == 0.0)
    samples.write_text("\n".join(lines[:bad] + lines[bad + 1:]) + "\n")
    _, problems = check_report(page, folder)
    assert any(p.startswith("sample browser, filter") for p in problems), problems


def browser_folder(tmp_path, n: int):
    """A finished experiment, written directly: zero_shot, an oracle best_of_n with 4 samples an
    example (one selected), and rl with 60 steps of noisy reward and a best-of-N baseline."""
    import random

    from ladder.store import JsonlWriter, write_json
    from ladder.table import write_summary
    from ladder.types import MetricValue, StageResult

    rng = random.Random(0)
    labels = ["positive", "negative", "neutral"]
    folder = tmp_path / "exp"
    results = []
    for stage, p in (("zero_shot", 0.5), ("best_of_n", 0.8), ("rl", 0.6)):
        records = []
        for i in range(n):
            target = labels[i % 3]
            k = 4 if stage == "best_of_n" else 1
            answers = [target if rng.random() < p else labels[(i + 1) % 3] for _ in range(k)]
            samples = [{"text": f" {a}</script>", "finish_reason": "eos", "score": float(a == target), "extracted": a}
                       for a in answers]
            rec = {"id": f"ex{i}", "target": target, "prompt": [{"role": "user", "content": f"Review: number {i}"}],
                   "score": samples[0]["score"], "error": False, "samples": samples}
            if stage == "best_of_n":
                best = max(range(k), key=lambda j: samples[j]["score"])
                rec.update(score=samples[best]["score"], selected=best, answer=answers[best])
            records.append(rec)
        with JsonlWriter(folder / stage / "r1" / "samples.jsonl") as out:
            out.write(records)
        m = sum(r["score"] for r in records) / n
        extra = {}
        if stage == "rl":
            extra = {"curves": {"rl_reward": {"x": list(range(1, 61)), "xlabel": "step", "ylabel": "reward",
                                              "y": {"reward (mean over rollouts)": [rng.random() for _ in range(60)]}}},
                     "baseline": {"label": "best-of-4, same reward", "oracle": True,
                                  "metric": {"value": 0.8, "ci_low": 0.75, "ci_high": 0.85, "n": n}, "diff": None}}
        result = StageResult(stage, stage, "r1", "choice", MetricValue(m, m - 0.05, m + 0.05, n), [],
                             {"errors": 0, "chance": 1 / 3, "majority": 1 / 3}, extra, oracle=stage == "best_of_n")
        write_json(folder / stage / "r1" / "metrics.json", result.to_dict())
        results.append(result)
    (folder / "experiment.yaml").write_text("name: exp\n")
    write_summary(folder, results)
    return folder


def test_report_table_marks_oracles_and_shows_chance(tmp_path):
    from ladder.report import table_html
    from ladder.table import read_summary
    from tests.test_advice import results_folder, scores

    k_way = {"chance": 0.25, "majority": 0.5, "unparsed": 0.12}
    stages = {"zero_shot": ("zero_shot", scores(0.5), [], k_way), "best_of_n": ("best_of_n", scores(0.9), [], k_way)}
    page = table_html(read_summary(results_folder(tmp_path, stages, oracles=("best_of_n",))))
    assert "<td>best_of_n (oracle)</td>" in page and "<td>zero_shot</td>" in page
    assert "an upper bound" in page and "<td>0.250 / 0.500</td><td>12%</td>" in page
    plain = table_html(read_summary(results_folder(tmp_path / "b", {"zero_shot": ("zero_shot", scores(0.5))})))
    assert "(oracle)" not in plain and "chance" not in plain


# ---------------------------------------------------------------------------------------------
# How curves and the stage chart are drawn


def test_step_axes_are_linear_and_only_n_is_log():
    from ladder.report import curve_figure
    from ladder.types import Curve

    steps = curve_figure("sft", Curve("loss", list(range(5, 101, 5)), {"train": [1 / s for s in range(5, 101, 5)]},
                                      "step", "step", "loss"))
    assert steps.layout.xaxis.type == "linear" and steps.layout.meta == {"curve_kind": "step"}
    bon = curve_figure("best_of_n", Curve("curve", [1, 2, 4, 8, 16, 32], {"metric": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]},
                                          "n", "k"))
    assert bon.layout.xaxis.type == "log" and list(bon.layout.xaxis.ticktext) == ["1", "2", "4", "8", "16", "32"]
    # Results written before curves were typed: the kind is read from the x label.
    (old,) = curves_of({"history": {"step": [10, 200, 400], "loss": [2.0, 1.0, 0.5]}})
    assert old.kind == "step" and curve_figure("sft", old).layout.xaxis.type == "linear"
    (old_n,) = curves_of(SHAPES["best_of_n"])
    assert old_n.kind == "n"


def test_rl_reward_is_smoothed_and_counts_start_at_zero():
    from ladder.report import curve_figure
    from ladder.report_curves import EMA_ALPHA, ema
    from ladder.types import Curve

    noisy = [0.2, 0.8] * 15
    fig = curve_figure("rl", Curve("rl_reward", list(range(30)), {"reward (mean over rollouts)": noisy},
                                   "step", "step"))
    raw, smooth = fig.data
    assert raw.opacity < 1 and list(raw.y) == noisy
    assert smooth.name.endswith(f"EMA α={EMA_ALPHA:g}") and list(smooth.y) == ema(noisy)
    assert max(smooth.y[10:]) - min(smooth.y[10:]) < 0.2  # the EMA is far steadier than the raw ±0.3
    assert ema([1.0, None, 0.0], 0.5) == [1.0, None, 0.5]
    short = curve_figure("rl", Curve("rl_reward", [0, 1, 2], {"reward": [0.1, 0.5, 0.2]}, "step", "step"))
    assert len(short.data) == 1  # three points: nothing to smooth
    tokens = curve_figure("rl", Curve("rl_length", [0, 1, 2], {"completion tokens (mean)": [2.1, 2.3, 2.0]}, "step",
                                      "step", "tokens"))
    assert tokens.layout.yaxis.rangemode == "tozero"
    score = curve_figure("sft", Curve("m", [0, 1], {"choice": [0.5, 0.6]}, "step", "step", "score"))
    assert score.layout.yaxis.rangemode is None


def test_identical_series_are_drawn_once_and_named_together():
    from ladder.report import curve_figure
    from ladder.types import Curve

    series = {"choice": [0.3, 0.5, 0.6], "stopped": [1, 1, 1], "target ranks first": [0.3, 0.5, 0.6]}
    fig = curve_figure("sft", Curve("test_metric", [0, 10, 20], series, "step", "step"))
    assert [t.name for t in fig.data] == ["choice = target ranks first (coincide)", "stopped"]
    near = curve_figure("x", Curve("c", [0, 1], {"a": [0.3, 0.5], "b": [0.3, 0.51]}, "step", "step"))
    assert [t.name for t in near.data] == ["a", "b"]


def test_a_chance_line_already_drawn_is_not_labelled_twice():
    extra = {"curves": {"test_loss": {"x": [0, 10], "y": {"test": [1.5, 0.9]}, "xlabel": "step",
                                      "hlines": {"chance −log(1/3)": math.log(3)}}},
             "choice_loss": {"chance_loss": math.log(3)}, "other_chance_loss": 2.0}
    (curve,) = curves_of(extra)
    # A curve that declares its reference lines gets exactly those (sft: chance belongs to the loss
    # over the choices, not to every loss); an undeclared loss curve gets every chance number.
    assert curve.hlines == {"chance −log(1/3)": math.log(3)}
    del extra["curves"]["test_loss"]["hlines"]
    (curve,) = curves_of(extra)
    assert curve.hlines == {"chance_loss": math.log(3), "other_chance_loss": 2.0}


def test_stage_chart_shows_baselines_chance_and_oracles(tmp_path):
    from ladder.report import stage_chart
    from ladder.table import read_summary

    folder = browser_folder(tmp_path, n=30)
    fig = stage_chart(read_summary(folder))
    bar = fig.data[0]
    assert list(bar.x) == ["zero_shot", "best_of_n (oracle)", "rl", "↳ best-of-4, same reward (oracle)"]
    assert list(bar.marker.pattern.shape) == ["", "/", "", "/"]  # oracles hatched
    assert bar.insidetextanchor == "start"  # value labels at the foot, clear of the CI whiskers
    chance, majority = fig.layout.shapes  # the majority class's share beside chance
    assert abs(chance.y0 - 1 / 3) < 1e-3 and "chance<br>0.333" in fig.layout.annotations[0].text
    want = float(read_summary(folder)[0]["majority"])
    assert abs(majority.y0 - want) < 1e-9 and majority.line.dash == "dot"
    assert fig.layout.annotations[1].text == f"majority class<br>{want:.3f}"


def test_table_leaves_out_repeated_columns():
    from ladder.report import table_html

    row = {k: "" for k in ("ci_low", "ci_high", "chance", "stop_hit_rate", "baseline", "flags")}
    rows = [{**row, "stage": "zero_shot", "type": "zero_shot", "metric": "choice", "value": 0.5, "n": 10,
             "errors": 0, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0, "seconds": 1}]
    page = table_html(rows)
    assert "<th>type</th>" not in page and "<th>metric</th>" not in page and "<th>choice<br>[95% CI]</th>" in page
    page = table_html(rows + [{**rows[0], "stage": "few_shot_max", "type": "few_shot", "metric": "exact"}])
    assert "few_shot_max <span class='type'>few_shot</span>" in page and "<th>metric</th>" in page


def test_browser_data_marks_answers_and_keeps_html_inert(tmp_path):
    from ladder.evidence import Evidence
    from ladder.report_samples import browser_data, samples_html

    folder = browser_folder(tmp_path, n=12)
    ev = Evidence.load(folder)
    data = browser_data(ev)
    S = data["strings"]
    assert [s["name"] for s in data["stages"]] == ["zero_shot", "best_of_n", "rl"] and len(data["rows"]) == 12
    bon = next((folder / "best_of_n").glob("*/samples.jsonl")).read_text().splitlines()
    for row, line in zip(data["rows"], bon):
        d = json.loads(line)
        cell = row["cells"][1]
        assert row["id"] == d["id"] and cell["k"] == d["selected"] and S[cell["a"]] == d["answer"]
        assert len(cell["n"]) == 4 and cell["w"] == (d["score"] < 1)
    page = samples_html(ev)
    assert "</script> " not in page.split("id='sample-data'>")[1].split("</script>")[0]
    assert "<\\/script>" in page  # a completion's "</script>" cannot end the data element


def test_a_stage_labels_its_chance_line_once_for_all_its_curves():
    from ladder.report_curves import stage_curves
    from ladder.types import MetricValue, StageResult

    extra = {"curves": {"train_loss": [[5, 2.1], [10, 1.6]],
                        "test_loss": {"x": [0, 10], "y": {"test": [1.5, 0.9]}, "xlabel": "step",
                                      "hlines": {"chance −log(1/3)": math.log(3)}}},
             "choice_loss": {"chance_loss": math.log(3)}}
    r = StageResult("sft", "sft", "r", "choice", MetricValue(0.5, 0.4, 0.6, 10), extra=extra)
    train, test = stage_curves(r)
    assert train.hlines == test.hlines == {"chance −log(1/3)": math.log(3)}
    assert train.kind == test.kind == "step"
