"""Variants in one YAML (ladder/variants.py): expansion, paired differences from the baseline
variant with Holm adjustment (against hand computations), `--variant`, and cache sharing."""

from __future__ import annotations

import csv
import math

import pytest
import yaml

from ladder.errors import ConfigError
from ladder.commands import execute, load
from ladder.variants import expand, holm, load_variants, run_main, variant_diffs
from tests.conftest import experiment


def test_expand_names_grid_and_models():
    raw = {"model": {"backend": "hf", "name": "m0"},
           "variants": {"base": {}, "terse": {"task.instruction": "x"}},
           "sweep": {"generation.temperature": [0, 0.7], "stages.1.k": [2]},
           "models": ["m1", {"backend": "openai", "name": "gpt-x"}]}
    out = dict(expand(raw))
    assert list(out)[0] == "base,temperature=0,k=2,m1"  # the first is the default baseline
    assert len(out) == 2 * 2 * 1 * 2
    assert out["terse,temperature=0.7,k=2,gpt-x"] == {
        "task.instruction": "x", "generation.temperature": 0.7, "stages.1.k": 2,
        "model": {"backend": "openai", "name": "gpt-x"}}
    # a model given by name keeps the experiment's backend and options
    assert out["base,temperature=0,k=2,m1"]["model"] == {"backend": "hf", "name": "m1"}


def test_holm_against_a_hand_computed_example():
    # m = 4; sorted p: .005 (×4 = .02), .01 (×3 = .03), .03 (×2 = .06), .04 (×1 = .04 → running max .06)
    adjusted, levels = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert levels == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2, 0.05 / 4])
    assert holm([0.6, 0.5])[0] == pytest.approx([1.0, 1.0])  # capped at 1, monotone


BASE = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0, "e": 1.0}


def test_paired_diff_from_the_baseline_equals_a_hand_computation():
    # Listed in another order, with an example the baseline never scored: paired by id, so `z` is out.
    x = {"e": 1.0, "d": 0.0, "c": 1.0, "b": 1.0, "a": 1.0, "z": 0.0}
    out = variant_diffs({"base": {"zero_shot": BASE}, "x": {"zero_shot": x}}, "base")
    assert set(out) == {("x", "zero_shot")}  # nothing for the baseline itself
    d = out[("x", "zero_shot")]
    # differences 0,1,0,0,0: mean .2, sd = sqrt(.8/4) = .4472, half = t(.975, 4)·sd/√5 = 2.7764·.2
    assert d["diff_base"] == pytest.approx(0.2)
    assert d["diff_base_n"] == 5
    assert d["diff_base_ci_low"] == pytest.approx(0.2 - 2.7764 * 0.2, abs=1e-4)
    assert d["diff_base_ci_high"] == pytest.approx(0.2 + 2.7764 * 0.2, abs=1e-4)
    # t = .2 / .2 = 1 with 4 df: two-sided p = .3739
    assert d["diff_base_p"] == pytest.approx(0.3739, abs=1e-4)
    assert d["diff_base_adjust"] == "" and d["diff_base_p_holm"] == ""  # one comparison: nothing to adjust


def test_more_than_two_variants_get_holm_adjusted_intervals():
    x = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 1.0}  # diffs 0,1,0,0,0: t = 1, p = .3739
    y = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0}  # diffs 0,1,0,1,-1: mean .2, sd .8367, p = .6213
    out = variant_diffs({"base": {"s": BASE}, "x": {"s": x}, "y": {"s": y}}, "base")
    dx, dy = out[("x", "s")], out[("y", "s")]
    assert dx["diff_base_adjust"] == dy["diff_base_adjust"] == "holm"
    # x has the smaller p: rank 0 of 2, level .05/2, t(1 − .0125, 4) = 3.4954; y: level .05, t = 2.7764
    assert dx["diff_base_ci_high"] - dx["diff_base"] == pytest.approx(3.4954 * 0.2, abs=1e-3)
    assert dy["diff_base_ci_high"] - dy["diff_base"] == pytest.approx(2.7764 * math.sqrt(0.7) / math.sqrt(5), abs=1e-3)
    assert dx["diff_base_p_holm"] == pytest.approx(2 * 0.3739, abs=1e-3)
    assert dy["diff_base_p_holm"] == pytest.approx(max(2 * 0.3739, 0.6213), abs=1e-3)


def _yaml_with_variants(tmp_path, model, **extra):
    path = experiment(tmp_path, model, n_test=12,
                      stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 1, "skip": "later"}], **extra)
    return path


def test_variant_errors_name_the_variant(tmp_path, random_model):
    path = _yaml_with_variants(tmp_path, random_model, variants={"a": {}, "b": {"generation.max_tokenz": 2}})
    with pytest.raises(ConfigError) as exc:
        load_variants(path)
    assert "variant b" in exc.value.render() and "max_tokenz" in exc.value.render()
    path = _yaml_with_variants(tmp_path, random_model, variants={"a": {}, "b": {"subsample.n": 5}})
    with pytest.raises(ConfigError, match="subsample.n"):
        load_variants(path)
    path = _yaml_with_variants(tmp_path, random_model, variants={"a": {}}, baseline="c")
    with pytest.raises(ConfigError, match="baseline 'c'"):
        load_variants(path)
    path = _yaml_with_variants(tmp_path, random_model, baseline="a")
    with pytest.raises(ConfigError, match="has none"):
        load_variants(path)
    assert not (tmp_path / "results").exists()


def test_one_variant_runs_alone_and_shares_cached_generations(tmp_path, random_model):
    # b differs from a only in a stage that is skipped: its zero_shot makes the same requests.
    path = _yaml_with_variants(tmp_path, random_model, variants={"a": {}, "b": {"stages.1.k": 2}})
    done = execute(load(path), variant=["a"])
    results, folder = done.variants.results, done.folder
    assert list(results) == ["a"]
    assert [p.name for p in (folder / "variants").iterdir()] == ["a"]  # exactly one ran
    first = results["a"][0].stats
    assert first.generated_samples > 0
    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["stage"]) for r in rows] == [("a", "zero_shot")]

    results = execute(load(path), variant=["b"]).variants.results
    second = results["b"][0].stats
    assert second.generated_samples == 0 and second.cached_samples == first.generated_samples
    with open(folder / "summary.csv") as f:  # rebuilt from both finished variants
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["stage"]) for r in rows] == [("a", "zero_shot"), ("b", "zero_shot")]
    assert float(rows[1]["diff_base"]) == 0.0 and rows[1]["diff_base_n"] == "12"
    assert rows[0]["diff_base"] == ""  # the baseline itself
    assert yaml.safe_load((folder / "variants" / "b" / "experiment.yaml").read_text())["stages"][1]["k"] == 2


def test_cli_lists_variant_names_and_checks_one(tmp_path, random_model):
    """`ladder variants` prints one name a line (what a job array indexes); `check --variant`
    plans only that one, and nothing is written."""
    from tests.test_cli import ladder

    path = _yaml_with_variants(tmp_path, random_model, variants={"a": {}, "b": {"generation.max_tokens": 2}},
                               sweep={"generation.temperature": [0, 0.5]})
    out = ladder("variants", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["a,temperature=0", "a,temperature=0.5", "b,temperature=0", "b,temperature=0.5"]
    out = ladder("check", path, "--variant", "b,temperature=0.5", "--json")
    assert out.returncode == 0, out.stderr
    import json

    plans = json.loads(out.stdout)
    assert list(plans) == ["b,temperature=0.5"]
    assert plans["b,temperature=0.5"]["results"].endswith("variants/b,temperature=0.5")
    assert not (tmp_path / "results").exists()


def test_the_shipped_variants_config_expands_to_six_paired_variants():
    from tests.conftest import REPO

    variants = load_variants(REPO / "configs" / "variants.yaml")
    assert len(variants) == 6 and variants[0].name == "instructed,temperature=0.0"
    instructions = {v.experiment.config.task.instruction for v in variants}
    assert len(instructions) == 3
    assert {v.experiment.config.generation.temperature for v in variants} == {0.0, 0.7}
    # what decides the examples is the same everywhere
    assert len({(v.experiment.config.seed, v.experiment.config.subsample.n) for v in variants}) == 1
    assert [s.type for s in variants[0].experiment.stages] == ["zero_shot", "best_of_n"]


def test_check_on_the_shipped_variants_config_plans_every_variant_with_its_power():
    """`ladder check configs/variants.yaml` (it raised KeyError 'power'): each variant's plan, with
    the power line, exit 0; --json carries each variant's power too."""
    import json

    from tests.conftest import REPO
    from tests.test_cli import ladder

    out = ladder("check", REPO / "configs" / "variants.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("config and data OK") == 6
    assert out.stdout.count("power: with n=200 paired examples") == 6
    out = ladder("check", REPO / "configs" / "variants.yaml", "--variant", "terse,temperature=0.7", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["terse,temperature=0.7"]
    assert plan["power"]["n"] == 200 and plan["power"]["mde"] == pytest.approx(0.099, abs=1e-3)


def test_holm_counts_each_distinct_run_pair_once():
    """A sweep over a later stage repeats the unchanged zero_shot run in every variant: each
    distinct (run, baseline run) pair is one comparison in Holm's m, its copies share one adjusted
    result, and a variant holding the baseline's own run is no comparison at all."""
    x = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 1.0}
    y = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0}
    distinct = variant_diffs({"base": {"s": BASE}, "x": {"s": x}, "y": {"s": y}}, "base")
    scores = {"base": {"s": BASE}, "x,lr=1": {"s": x}, "x,lr=2": {"s": x}, "y,lr=1": {"s": y},
              "y,lr=2": {"s": y}, "base,lr=2": {"s": dict(BASE)}}
    runs = {"base": {"s": "rb"}, "x,lr=1": {"s": "rx"}, "x,lr=2": {"s": "rx"}, "y,lr=1": {"s": "ry"},
            "y,lr=2": {"s": "ry"}, "base,lr=2": {"s": "rb"}}
    out = variant_diffs(scores, "base", runs=runs)
    for copy, one in (("x,lr=1", "x"), ("x,lr=2", "x"), ("y,lr=1", "y"), ("y,lr=2", "y")):
        assert out[(copy, "s")] == distinct[(one, "s")]  # m = 2, not 5; copies ranked alike
    same = out[("base,lr=2", "s")]
    assert same["diff_base_adjust"] == "same run" and same["diff_base_p"] == "" and same["diff_base_p_holm"] == ""
    # Only one distinct comparison left: nothing to adjust, though four variants hold it.
    alone = variant_diffs({k: scores[k] for k in ("base", "x,lr=1", "x,lr=2", "base,lr=2")}, "base", runs=runs)
    assert alone[("x,lr=1", "s")]["diff_base_adjust"] == "" == alone[("x,lr=2", "s")]["diff_base_p_holm"]


def test_combined_table_reads_run_ids_for_holm(tmp_path):
    """combined_rows passes each variant's run ids, so the copies on disk share one result."""
    from ladder.store import JsonlWriter, write_json
    from ladder.table import write_summary
    from ladder.types import MetricValue, StageResult
    from ladder.variants import combined_rows

    x = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 1.0}
    y = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0}
    held = {"base": (BASE, "rb"), "x1": (x, "rx"), "x2": (x, "rx"), "y1": (y, "ry"), "b2": (BASE, "rb")}
    for name, (sc, run) in held.items():
        folder = tmp_path / "variants" / name
        with JsonlWriter(folder / "zero_shot" / run / "samples.jsonl") as out:
            out.write([{"id": i, "score": v, "samples": []} for i, v in sc.items()])
        m = sum(sc.values()) / len(sc)
        result = StageResult("zero_shot", "zero_shot", run, "choice", MetricValue(m, 0.0, 1.0, len(sc)), [], {})
        write_json(folder / "zero_shot" / run / "metrics.json", result.to_dict())
        write_summary(folder, [result])
    rows = {r["variant"]: r for r in combined_rows(tmp_path, list(held), "base")}
    assert rows["x1"]["diff_base_p_holm"] == rows["x2"]["diff_base_p_holm"] == pytest.approx(2 * 0.3739, abs=1e-3)
    assert rows["x1"]["diff_base_ci_low"] == rows["x2"]["diff_base_ci_low"]
    assert rows["b2"]["diff_base_adjust"] == "same run" and rows["b2"]["diff_base_p"] == ""


def test_api_variants_run_at_once_on_one_budget_with_the_numbers_of_one_by_one(tmp_path, monkeypatch):
    """Four API-bound variants against a rate-limited server run at once (the server has more
    requests in flight than one variant makes) on one controller; the combined table equals the
    one a one-by-one run of the same variants writes."""
    import ladder.variants as variants_module
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY_ENV, api_experiment, varied

    monkeypatch.setenv(KEY_ENV, "sk-test-variants")
    names = ["a", "b", "c", "d"]
    specs = {n: {"task.instruction": f"Variant {n}: classify the sentiment of the review."} for n in names}
    tables = {}
    # A limit above what the run needs: concurrency binds (at a binding rate limit the variants
    # would take the limit's time together or apart; scripts/bench_ratelimit.py times that).
    with FakeAPIServer(latency=0.25, responder=varied, limits={"rpm": 60000, "mode": "spend"}) as srv:
        for how in ("together", "one_by_one"):
            if how == "one_by_one":
                monkeypatch.setattr(variants_module, "api_bound", lambda v: False)
            folder = tmp_path / how
            folder.mkdir()
            monkeypatch.setenv("LADDER_CACHE_DIR", str(folder / "cache"))  # nothing answered from the first run
            path = api_experiment(folder, "openai", srv.base_url, variants=specs, model={"timeout": 10})
            srv.reset()
            exp = load(path)
            done = run_main(exp, load_variants(exp))
            results, combined = done.results, done.folder
            order = [b["body"]["messages"][0]["content"].split(":")[0].split()[-1] for b in srv.requests()]
            spans = {n: (order.index(n), len(order) - 1 - order[::-1].index(n)) for n in names}
            stats = srv.stats()
            assert stats["unique_succeeded"] == 4 * 40 and stats["repeated_successes"] == 0  # each prompt once
            with open(combined / "summary.csv") as f:
                tables[how] = [{k: v for k, v in r.items() if k not in ("seconds", "run_at")} for r in csv.DictReader(f)]
            switches = sum(x != y for x, y in zip(order, order[1:]))  # one by one: 3
            if how == "together":  # more in flight at once than one variant has requests: several ran at once
                assert stats["max_in_flight"] > 40 and switches > 3, (stats["max_in_flight"], spans)
                assert all(r[0].stats.rate_control["mode"] == "auto" for r in results.values())
            else:
                assert stats["max_in_flight"] <= 40 and switches == 3 and all(spans[x][1] < spans[y][0] for x, y in zip(names, names[1:])), spans
    assert tables["together"] == tables["one_by_one"] and len(tables["together"]) == 4
