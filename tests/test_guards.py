"""Subsample determinism and size warnings; the stop-hit rate."""

import pytest

from ladder.config import GuardsConfig
from ladder.guards import choice_baselines, pct_apart, stop_guard, stop_hit_rate, subsample
from ladder.types import Example, MetricValue, Sample

G = GuardsConfig()


def test_subsample_is_deterministic_and_seed_dependent():
    items = list(range(5000))
    a, _ = subsample(items, 300, seed=7, guards=G)
    b, _ = subsample(items, 300, seed=7, guards=G)
    c, _ = subsample(items, 300, seed=8, guards=G)
    assert a == b and a != c and len(a) == 300 and len(set(a)) == 300
    assert a == sorted(a)  # kept in data order


def test_subsample_size_warnings():
    _, flags = subsample(list(range(5000)), 2000, 0, G)
    assert flags[0].level == "warn" and "more than you need" in flags[0].message
    _, flags = subsample(list(range(100)), 300, 0, G)
    assert flags[0].level == "warn" and "too few for clean trends" in flags[0].message
    assert "only 100" in flags[0].message
    _, flags = subsample(list(range(5000)), 500, 0, G)
    assert flags[0].level == "ok"
    chosen, flags = subsample(list(range(5000)), "all", 0, G)
    assert len(chosen) == 5000 and flags[0].level == "warn"


def sample(reason):
    return Sample(text="x", finish_reason=reason)


def test_stop_hit_rate_counts_stop_and_eos_and_ignores_errors():
    samples = [sample("stop"), sample("eos"), sample("length"), sample("length"), sample("error")]
    assert stop_hit_rate(samples) == 0.5


def test_stop_guard_warns_only_with_custom_stops_below_threshold():
    samples = [sample("stop")] * 8 + [sample("length")] * 2
    assert stop_guard(samples, ["\n"], 0.9).level == "warn"
    assert "80%" in stop_guard(samples, ["\n"], 0.9).message
    assert stop_guard(samples, ["\n"], 0.8).level == "ok"
    assert stop_guard(samples, [], 0.9).level == "info"
    assert stop_guard([sample("eos")] * 10, ["###"], 0.9).level == "ok"


def test_stop_guard_shows_enough_digits_to_tell_rate_from_threshold():
    samples = [sample("stop")] * 897 + [sample("length")] * 103  # 0.897 against 0.9
    msg = stop_guard(samples, ["\n"], 0.9).message
    assert "only 89.7% of samples" in msg and "(threshold 90.0%)" in msg
    assert pct_apart(0.8, 0.9) == ("80%", "90%") and pct_apart(0.8999, 0.9) == ("89.99%", "90.00%")


def ex(i: int, target: str, choices: tuple[str, ...]) -> Example:
    return Example(f"e{i}", {}, target, choices)


def rec(i: int, *extracted: str | None, selected: int | None = None) -> dict:
    out = {"id": f"e{i}", "samples": [{"text": "", "score": 0.0, "extracted": x} for x in extracted]}
    return out if selected is None else {**out, "selected": selected}


def test_choice_baselines_use_each_examples_own_k():
    examples = [ex(0, "a", ("a", "b")), ex(1, "a", ("a", "b", "c", "d")), ex(2, "b", ("a", "b")),
                ex(3, "x", None)]  # no choices: not a K-way example
    records = [rec(0, "a"), rec(1, None), rec(2, "b"), rec(3, "x")]
    stats, guards = choice_baselines(records, examples, MetricValue(0.6, 0.4, 0.8, 3))
    assert stats["chance"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 2) / 3)
    assert stats["majority"] == pytest.approx(2 / 3)  # 'a' is the target of two of the three
    assert stats["unparsed"] == pytest.approx(1 / 3)
    (warn,) = guards  # 33% unparsed; the CI (up to 0.8) is not below chance
    assert warn.name == "unparsed" and "1 of 3 answers" in warn.message


def test_choice_baselines_flag_below_chance_and_read_the_selected_sample():
    examples = [ex(i, "a", ("a", "b")) for i in range(20)]
    # best_of_n: the selected sample is the graded answer, not the unparsed others in its pool.
    records = [rec(i, None, "b", None, selected=1) for i in range(20)]
    stats, guards = choice_baselines(records, examples, MetricValue(0.1, 0.03, 0.3, 20))
    assert stats == {"chance": 0.5, "majority": 1.0, "unparsed": 0.0}
    assert [g.name for g in guards] == ["below_chance"] and "below chance (0.500" in guards[0].message
    _, fine = choice_baselines(records, examples, MetricValue(0.4, 0.2, 0.6, 20))
    assert fine == []
    assert choice_baselines(records, [ex(i, "a", None) for i in range(20)], MetricValue(0.4, 0.2, 0.6, 20)) == ({}, [])


def test_an_empty_template_field_is_counted_before_anything_runs(tmp_path):
    """A row whose template field is "" is sent as an empty question: warn with the count (a
    missing value is an error; an empty one may be meant)."""
    import json

    from ladder.config import load_experiment
    from ladder.runner import prepare
    from tests.conftest import experiment

    path = experiment(tmp_path, "unused", model={"backend": "tests.test_climb:Oracle", "name": "oracle"})
    test = tmp_path / "data/test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    for r in rows[:3]:
        r["text"] = ""
    rows[3]["text"] = "   "
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = prepare(load_experiment(path))
    (warn,) = [g for g in plan.guards if g.name == "empty_field"]
    assert warn.level == "warn" and warn.value == 4
    assert "4 of the 40 test examples have an empty 'text'" in warn.message
