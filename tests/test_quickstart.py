"""The README's quickstart, as a user runs it: the shipped config, model and data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

NUMBERS = ("stage", "metric", "value", "ci_low", "ci_high", "n", "stop_hit_rate", "prompt_tokens",
           "completion_tokens", "run_id")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One results folder and model-call cache for this module's tests: the climb reads the stages
    the run finished (as a user's climb after a run does) instead of training them a second time."""
    return tmp_path_factory.mktemp("quickstart")


def run(tmp_path, shared=None):
    where = shared or tmp_path
    env = {**os.environ, "PYTHONPATH": str(REPO), "LADDER_CACHE_DIR": str(where / "cache")}
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", "configs/quickstart.yaml",
                          "--set", f"results_dir={where / 'results'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr
    with open(where / "results" / "quickstart" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def test_quickstart_runs_offline_and_reruns_from_cache(tmp_path, shared):
    first, rows = run(tmp_path, shared)
    stages = [r["stage"] for r in rows]
    assert stages[:3] == ["zero_shot", "few_shot", "few_shot_max"]
    for row in rows:
        assert row["n"] == "300" and float(row["ci_low"]) <= float(row["value"]) <= float(row["ci_high"])
    zero = rows[0]
    assert float(zero["value"]) > 1 / 3  # the tiny model beats chance on the prompting rungs
    assert "value [95% CI]" in first.stdout
    # The rl rung trained, and best-of-N with the same reward sits beside it on the same examples.
    rl = next(r for r in rows if r["stage"] == "rl")
    # rl's best-of-8 picks by the task metric, reading the test answers: an oracle line, as is best_of_n.
    assert rl["baseline"] == "best-of-8, same reward (oracle)" and rl["baseline_n"] == "300"
    assert [r["stage"] for r in rows if r["oracle"] == "True"] == ["best_of_n"]
    assert "best_of_n (oracle)" in first.stdout
    assert float(rl["value"]) > float(zero["value"])  # 50 GRPO steps on the task metric help
    assert "best-of-8, same reward" in first.stdout

    second, again = run(tmp_path, shared)
    assert second.stderr.count("0 new generations") == len(rows)
    assert [{k: r[k] for k in NUMBERS} for r in again] == [{k: r[k] for k in NUMBERS} for r in rows]


@pytest.mark.slow
def test_quickstart_climb_goes_past_the_oracle_to_sft(shared):
    """The acceptance run: best_of_n reaches 0.8 only as an oracle, so the climb goes on to sft.
    After the run test above it reuses that run's finished stages; alone, it computes them."""
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "climb", "configs/quickstart.yaml", "--target", "0.8",
                          "--set", f"results_dir={shared / 'results'}"], cwd=REPO, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHONPATH": str(REPO),
                                           "LADDER_CACHE_DIR": str(shared / "cache")})
    assert out.returncode == 0, out.stderr
    saved = json.loads((shared / "results" / "quickstart" / "climb.json").read_text())
    rungs = {r["stage"]: r for r in saved["rungs"]}
    assert rungs["best_of_n"]["decision"] == "go_on" and rungs["best_of_n"]["oracle"] is True
    assert saved["upper_bounds"] == ["best_of_n"] and "upper bound" in rungs["best_of_n"]["reason"]
    assert rungs["sft"]["decision"] in ("stop", "go_on") and rungs["sft"]["oracle"] is False
    assert saved["stopped_at"] != "best_of_n" and "best_of_n (oracle)" in out.stdout
