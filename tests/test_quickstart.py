"""The README's quickstart, as a user runs it: the shipped config, model and data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from tests.conftest import REPO

NUMBERS = ("stage", "metric", "value", "ci_low", "ci_high", "n", "stop_hit_rate", "prompt_tokens",
           "completion_tokens", "run_id")


def run(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", "configs/quickstart.yaml",
                          "--set", f"results_dir={tmp_path / 'results'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "results" / "quickstart" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def test_quickstart_runs_offline_and_reruns_from_cache(tmp_path):
    first, rows = run(tmp_path)
    stages = [r["stage"] for r in rows]
    assert stages[:3] == ["zero_shot", "few_shot", "few_shot_max"]
    for row in rows:
        assert row["n"] == "300" and float(row["ci_low"]) <= float(row["value"]) <= float(row["ci_high"])
    zero = rows[0]
    assert float(zero["value"]) > 1 / 3  # the tiny model beats chance on the prompting rungs
    assert "value [95% CI]" in first.stdout
    # The rl rung trained, and best-of-N with the same reward sits beside it on the same examples.
    rl = next(r for r in rows if r["stage"] == "rl")
    assert rl["baseline"] == "best-of-8, same reward" and rl["baseline_n"] == "300"
    assert float(rl["value"]) > float(zero["value"])  # 50 GRPO steps on the task metric help
    assert "best-of-8, same reward" in first.stdout

    second, again = run(tmp_path)
    assert second.stderr.count("0 new generations") == len(rows)
    assert [{k: r[k] for k in NUMBERS} for r in again] == [{k: r[k] for k in NUMBERS} for r in rows]
