"""A variants experiment's results folder read back whole (ladder/variants_folder.py), through the
real CLI: `ladder compare`, `report`, `atlas`, `log` and `ladder.load` show every variant, and a
folder with nothing finished is exit 1, never an empty success. Also the combined table's columns:
diff_base_mde, each variant's own Δ zero_shot, one baseline family, the best-variant mark."""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, experiment

TINY = REPO / "ladder" / "assets" / "ladder-tiny"
VARIANTS = {"a": {}, "b": {"task.instruction": "Sentiment? One word."}, "c": {"task.instruction": ""}}


def ladder(*args, cache):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LADDER_CACHE_DIR": str(cache), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Three variants × (zero_shot, best_of_n) of ladder-tiny on 12 examples, run by `ladder run`."""
    tmp = tmp_path_factory.mktemp("variants")
    path = experiment(tmp, TINY, n_test=12, variants=VARIANTS,
                      stages=[{"type": "zero_shot"}, {"type": "best_of_n", "n": 2, "scorer": "metric"}])
    out = ladder("run", path, cache=tmp / "cache")
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp / "results" / "t", tmp / "cache"


def test_compare_prints_every_variant(ran):
    folder, cache = ran
    out = ladder("compare", folder, cache=cache)
    assert out.returncode == 0, out.stderr
    for v in VARIANTS:  # every variant's rows, with the baseline marked and a Δ baseline column
        assert f"│ {v} " in out.stdout or f"★ {v}" in out.stdout
    assert "(baseline)" in out.stdout and "Δ baseline" in out.stdout and "Δ zero_shot" in out.stdout
    assert "Nothing flagged" not in out.stdout and "nothing flagged" not in out.stdout
    assert "b: " in out.stdout  # next steps say which variant they are about


def test_compare_two_variants_folders_pairs_every_variant(ran, tmp_path):
    """Two variants experiments (here a copy of one): each variant's stage pairs with its namesake,
    its samples found under variants/<variant>/ and its examples' contents in that variant's manifest."""
    folder, cache = ran
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    out = ladder("compare", folder, copy, cache=cache)
    assert out.returncode == 0, out.stdout + out.stderr
    for v in VARIANTS:
        for stage in ("zero_shot", "best_of_n"):
            line = next(ln for ln in out.stdout.splitlines() if f"│ {v}/{stage} " in ln)
            assert "│       12 │" in line and "0 / 0" in line  # 12 paired examples, none unmatched


def test_report_and_atlas_show_every_variant(ran):
    folder, cache = ran
    out = ladder("report", folder, "--no-atlas", cache=cache)
    assert out.returncode == 0, out.stderr
    page = (folder / "report.html").read_text()
    assert "6 stages in 3 variants (baseline a)" in page
    for v in VARIANTS:
        assert f"{v}/zero_shot" in page and f"{v}/best_of_n" in page
    assert "No samples recorded" not in page and "Nothing flagged" not in page
    out = ladder("atlas", folder, "--stage", "zero_shot", cache=cache)
    assert out.returncode == 0, out.stderr
    from ladder.atlas import load_points

    points = load_points(folder)
    assert {p.stage for p in points} == {f"{v}/{s}" for v in VARIANTS for s in ("zero_shot", "best_of_n")}
    assert len(points) == 3 * 2 * 12  # one kept sample per example, stage and variant
    assert {p.stage for p in load_points(folder, ["b/zero_shot"])} == {"b/zero_shot"}


def test_log_has_the_combined_table(ran):
    folder, cache = ran
    out = ladder("log", folder, cache=cache)
    assert out.returncode == 0, out.stderr
    assert "(no stage finished)" not in out.stdout
    assert "| zero_shot | c | choice |" in out.stdout and "Δ baseline" in out.stdout


def test_load_gives_every_variant_and_one_variant_its_name(ran):
    pd = pytest.importorskip("pandas")
    import ladder as lib

    folder, _ = ran
    res = lib.load(folder)
    assert sorted(res.stages.variant.unique()) == ["a", "b", "c"]
    sa = res.samples
    assert isinstance(sa, pd.DataFrame)
    assert len(sa) == 3 * (12 + 12 * 2)
    assert sa.groupby("variant").size().to_dict() == {"a": 36, "b": 36, "c": 36}
    # an example's score averages to the table's value, per variant and stage
    per = sa.drop_duplicates(["variant", "stage", "example_id"]).groupby(["variant", "stage"]).example_score.mean()
    for _, row in res.stages.iterrows():
        assert per[(row.variant, row.stage)] == pytest.approx(row.value, abs=1e-6)
    one = lib.load(folder / "variants" / "b")
    assert set(one.stages.variant) == {"b"} and set(one.samples.variant) == {"b"} and len(one.samples) == 36


def test_nothing_finished_is_exit_1_everywhere(ran, tmp_path):
    folder, cache = ran
    empty = tmp_path / "t"
    (empty / "variants").mkdir(parents=True)
    shutil.copy(folder / "summary.csv", empty / "summary.csv")
    if (folder / "variants.json").exists():
        shutil.copy(folder / "variants.json", empty / "variants.json")
    with open(empty / "summary.csv", newline="") as f:  # the header only: no variant finished
        header = f.readline()
    (empty / "summary.csv").write_text(header)
    (empty / "log.jsonl").write_text("")
    for command in ("compare", "report", "atlas", "log"):
        out = ladder(command, empty, cache=cache)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and "error:" in out.stdout + out.stderr
        assert not (empty / "report.html").exists() and not (empty / "atlas.html").exists()
    import ladder as lib
    from ladder.errors import NothingMeasured

    pytest.importorskip("pandas")
    with pytest.raises(NothingMeasured):
        lib.load(empty)
    # the same for a plain experiment whose summary lists no stage
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "summary.csv").write_text("stage,type,metric,value,ci_low,ci_high,n,run_id\n")
    for command in ("compare", "report", "atlas"):
        out = ladder(command, plain, cache=cache)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
    with pytest.raises(NothingMeasured):
        lib.load(plain)


def test_combined_summary_columns(ran):
    folder, _ = ran
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = list(rows[0])
    assert "diff_base_mde" in cols and "best" in cols
    assert not [c for c in cols if c.startswith("baseline")]  # one family: diff_base_*
    by = {(r["variant"], r["stage"]): r for r in rows}
    # each variant's own Δ zero_shot (its best_of_n minus its own zero_shot)
    for v in VARIANTS:
        bon, zs = by[(v, "best_of_n")], by[(v, "zero_shot")]
        assert bon["diff_zero"] != ""
        assert float(bon["diff_zero"]) == pytest.approx(float(bon["value"]) - float(zs["value"]), abs=1e-3)
    for v in ("b", "c"):
        r = by[(v, "zero_shot")]
        assert float(r["diff_base_mde"]) >= 0 and r["diff_base_mde"] != ""
    assert by[("a", "zero_shot")]["diff_base_mde"] == ""  # the baseline is not compared with itself


def test_mde_tells_too_small_to_detect_from_no_difference():
    from statistics import NormalDist, stdev

    from ladder.variants import variant_diffs

    base = {str(i): float(i % 2) for i in range(40)}
    # identical outputs: Δ 0 and MDE 0 — there is no difference at all
    same = variant_diffs({"base": {"s": base}, "same": {"s": dict(base)}}, "base")[("same", "s")]
    assert same["diff_base"] == 0.0 and same["diff_base_mde"] == 0.0
    # four examples flip, two each way: Δ 0 too, but a difference under ±MDE could hide in it
    x = {k: 1 - v if int(k) < 4 else v for k, v in base.items()}
    d = variant_diffs({"base": {"s": base}, "x": {"s": x}}, "base")[("x", "s")]
    assert d["diff_base"] == 0.0 and d["diff_base_ci_low"] < 0 < d["diff_base_ci_high"]
    diffs = [x[k] - base[k] for k in base]
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)  # one comparison: α = 0.05
    assert d["diff_base_mde"] == pytest.approx(z * stdev(diffs) / len(diffs) ** 0.5, rel=1e-9)
    assert d["diff_base_mde"] > 0.1


def test_best_variant_is_marked_only_when_its_lead_survives_holm():
    from ladder.stats import best_variants

    rng = random.Random(0)
    ids = [str(i) for i in range(200)]
    base = {i: float(rng.random() < 0.5) for i in ids}
    good = {i: 1.0 if rng.random() < 0.6 else base[i] for i in ids}  # far better than base
    near = {i: 1.0 if rng.random() < 0.55 else base[i] for i in ids}  # as good as good, nearly
    scores = {"base": {"s": base}, "good": {"s": good}, "near": {"s": near}, "weak": {"s": dict(base)}}
    values = {(v, "s"): sum(x.values()) / len(x) for v, by in scores.items() for x in by.values()}
    assert max(values, key=values.get) == ("good", "s")
    assert best_variants(scores, values) == {}  # good leads near by too little (p ≈ 0.49): no mark
    del scores["near"]
    best = best_variants(scores, values)
    assert best["s"][0] == "good" and best["s"][1] < 0.05
    assert best_variants(scores, {**values, ("weak", "s"): values[("good", "s")]}) == {}  # a tie for the top


def test_the_printed_table_stars_the_best_and_says_identical(capsys):
    from ladder.variants import print_combined

    row = {"stage": "s", "metric": "choice", "value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 200, "flags": "",
           "diff_zero": "", "oracle": False}
    rows = [{**row, "variant": "base", "best": False, "diff_base": ""},
            {**row, "variant": "good", "best": True, "diff_base": 0.2, "diff_base_ci_low": 0.1,
             "diff_base_ci_high": 0.3, "diff_base_mde": 0.08, "diff_base_p": 0.001, "diff_base_n": 200},
            {**row, "variant": "copy", "best": False, "diff_base": 0.0, "diff_base_ci_low": 0.0,
             "diff_base_ci_high": 0.0, "diff_base_mde": 0.0, "diff_base_p": 1.0, "diff_base_n": 200}]
    print_combined(rows, "base", "t")
    out = capsys.readouterr().out
    assert "★ good" in out and "★ base" not in out and "identical outputs" in out and "±0.080" in out
