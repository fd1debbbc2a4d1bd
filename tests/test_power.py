"""The minimum detectable effect against the textbook formula, and its summary.csv columns."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

from ladder.power import PLANNING_SD, diff_mde, mde, n_needed, sd_of
from ladder.stats import paired_diff
from ladder.store import JsonlWriter, write_json
from ladder.table import read_summary, write_summary
from ladder.types import MetricValue, StageResult


def test_mde_is_the_textbook_formula():
    # MDE = (z_{1-α/2} + z_{1-β}) σ / √n with α = 0.05, β = 0.2; quantiles from the standard library.
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert abs(z - 2.8016) < 1e-4
    for sd, n in ((1.0, 100), (0.5, 300), (0.3, 1000), (0.42, 37)):
        assert abs(mde(sd, n) - z * sd / math.sqrt(n)) < 1e-12
    # Cohen's paired example: effect 0.5 sd at 80% power needs n = ((1.96 + 0.84) / 0.5)² ≈ 31.4 → 32.
    assert n_needed(1.0, 0.5) == 32 and n_needed(1.0, -0.5) == 32
    # n_needed inverts mde: the n it gives detects at least δ.
    for delta in (0.02, 0.05, 0.1):
        n = n_needed(0.5, delta)
        assert mde(0.5, n) <= delta < mde(0.5, n - 1)
    # The planning assumption behind `ladder check`: 300 examples detect ±0.081, 1,000 ±0.044.
    assert round(mde(PLANNING_SD, 300), 3) == 0.081 and round(mde(PLANNING_SD, 1000), 3) == 0.044
    assert math.isnan(mde(0.5, 0)) and n_needed(0.5, 0) == 0


def test_sd_read_back_from_the_paired_interval():
    rng = random.Random(3)
    for n in (5, 12, 31, 400):
        a = [float(rng.random() < 0.6) for _ in range(n)]
        b = [float(rng.random() < 0.5) for _ in range(n)]
        diffs = [x - y for x, y in zip(a, b)]
        mean = sum(diffs) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1))
        d = paired_diff(a, b)
        assert abs(sd_of(d) - sd) < 1e-9
        assert abs(diff_mde(d) - mde(sd, n)) < 1e-9
    assert math.isnan(sd_of(MetricValue(1.0, float("nan"), float("nan"), 1)))


def test_summary_has_mde_per_difference(tmp_path):
    rng = random.Random(0)
    zero = [float(rng.random() < 0.5) for _ in range(300)]
    few = [float(rng.random() < 0.55) for _ in range(300)]
    results = []
    for name, vals in (("zero_shot", zero), ("few_shot", few)):
        with JsonlWriter(tmp_path / name / "r1" / "samples.jsonl") as out:
            out.write([{"id": f"ex{i}", "score": s, "error": False, "samples": []} for i, s in enumerate(vals)])
        m = sum(vals) / 300
        r = StageResult(name, name, "r1", "choice", MetricValue(m, m - 0.05, m + 0.05, 300), [], {"errors": 0})
        write_json(tmp_path / name / "r1" / "metrics.json", r.to_dict())
        results.append(r)
    write_summary(tmp_path, results)
    rows = read_summary(tmp_path)
    diffs = [x - y for x, y in zip(few, zero)]
    mean = sum(diffs) / 300
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 299)
    want = (NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)) * sd / math.sqrt(300)
    assert rows[0]["diff_prev_mde"] == ""
    assert abs(rows[1]["diff_prev_mde"] - want) < 1e-4 and rows[1]["diff_zero_mde"] == rows[1]["diff_prev_mde"]
