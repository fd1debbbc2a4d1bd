"""`ladder compare a b`: experiments paired by example content, whatever the row order."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from ladder.compare import compare, unpaired_diff
from ladder.errors import LadderError
from ladder.stats import num, paired_diff
from ladder.store import JsonlWriter, write_json
from ladder.table import write_summary
from ladder.types import Example, MetricValue, StageResult
from tests.conftest import REPO


def make(folder, examples, stages: dict, metric="choice", metric_section=None):
    """A results folder written by hand: examples in this experiment's row order (ids by row, as
    ladder gives them without id_field), stage → per-example scores in the same order."""
    ids = [f"test-{i}" for i in range(len(examples))]
    results = []
    for name, vals in stages.items():
        with JsonlWriter(folder / name / "r1" / "samples.jsonl") as out:
            out.write([{"id": i, "score": s, "error": False, "samples": []} for i, s in zip(ids, vals)])
        m = sum(vals) / len(vals)
        r = StageResult(name, name, "r1", metric, MetricValue(m, m - .05, m + .05, len(vals)), [], {"errors": 0})
        write_json(folder / name / "r1" / "metrics.json", r.to_dict())
        results.append(r)
    write_json(folder / "manifest.json", {"subsample": {"ids": ids, "content": [e.content[:16] for e in examples]}})
    (folder / "experiment.yaml").write_text(f"metric: {metric_section or {'type': metric}}\n")
    write_summary(folder, results)
    return folder


def rows(n=80, seed=0):
    rng = random.Random(seed)
    return [Example(f"test-{i}", {"text": f"review number {i}"}, rng.choice(["positive", "negative"]))
            for i in range(n)]


def ladder(*args):
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_pairs_by_content_when_row_order_differs(tmp_path):
    exs = rows()
    rng = random.Random(1)
    a = [float(rng.random() < 0.5) for _ in exs]       # score of example k in experiment a
    b = [float(rng.random() < 0.7) for _ in exs]       # ... in experiment b
    order = list(range(len(exs)))
    rng.shuffle(order)                                 # b's data file holds the same rows shuffled
    fa = make(tmp_path / "a", exs, {"zero_shot": a})
    fb = make(tmp_path / "b", [Example(f"test-{j}", exs[k].fields, exs[k].target) for j, k in enumerate(order)],
              {"zero_shot": [b[k] for k in order]})
    ((_, (pair,)),) = compare([fa, fb])
    want = paired_diff(b, a)                           # by example, b − a
    assert pair.paired and pair.unmatched == (0, 0)
    assert (pair.diff.value, pair.diff.ci_low, pair.diff.ci_high, pair.diff.n) == \
        pytest.approx((want.value, want.ci_low, want.ci_high, want.n))
    by_row = paired_diff([b[k] for k in order], a)     # what pairing by id (row position) would say
    assert by_row.ci_high - by_row.ci_low != pytest.approx(want.ci_high - want.ci_low)
    out = ladder("compare", fa, fb)
    assert out.returncode == 0, out.stderr
    assert f"{num(want.value, True)} [{num(want.ci_low, True)}, {num(want.ci_high, True)}]" in out.stdout
    assert "paired by example content" in out.stdout


def test_partial_overlap_and_cross_stage_pairs(tmp_path):
    exs = rows(60)
    fa = make(tmp_path / "a", exs[:40], {"zero_shot": [1.0, 0.0] * 20})
    fb = make(tmp_path / "b", exs[20:], {"few_shot": [1.0] * 40})
    with pytest.raises(LadderError, match="no stage name in common"):
        compare([fa, fb])
    ((_, (pair,)),) = compare([fa, fb], stages=["zero_shot:few_shot"])
    assert pair.diff.n == 20 and pair.unmatched == (20, 20)
    assert pair.diff.value == pytest.approx(1.0 - 0.5)


def test_no_common_example_refuses_unless_unpaired(tmp_path):
    exs = rows(60)
    fa = make(tmp_path / "a", exs[:30], {"zero_shot": [1.0, 0.0, 0.0] * 10})
    fb = make(tmp_path / "b", exs[30:], {"zero_shot": [1.0, 1.0, 0.0] * 10})
    out = ladder("compare", fa, fb)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "share no example" in " ".join(out.stderr.split()) and "--unpaired" in out.stderr
    out = ladder("compare", fa, fb, "--unpaired")
    assert out.returncode == 0, out.stderr
    want = unpaired_diff([1.0, 0.0, 0.0] * 10, [1.0, 1.0, 0.0] * 10)
    assert "UNPAIRED" in out.stdout and f"{num(want.value, True)} [{num(want.ci_low, True)}" in out.stdout


def test_different_metrics_are_refused(tmp_path):
    exs = rows(30)
    fa = make(tmp_path / "a", exs, {"zero_shot": [1.0] * 30}, metric="choice")
    fb = make(tmp_path / "b", exs, {"zero_shot": [0.0] * 30}, metric="exact_match")
    out = ladder("compare", fa, fb)
    err = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in err
    assert "metric 'choice'" in err and "'exact_match'" in err and "same metric" in err
    fc = make(tmp_path / "c", exs, {"zero_shot": [0.0] * 30}, metric_section={"type": "choice", "extract": "first"})
    with pytest.raises(LadderError, match="metric sections differ"):
        compare([fa, fc])


def test_one_folder_reprints_its_table(tmp_path):
    fa = make(tmp_path / "a", rows(30), {"zero_shot": [1.0, 0.0] * 15})
    out = ladder("compare", fa)
    assert out.returncode == 0 and "zero_shot" in out.stdout and "value [95% CI]" in out.stdout
