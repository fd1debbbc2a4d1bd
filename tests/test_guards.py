"""Subsample determinism and size warnings; the stop-hit rate."""

import pytest

from ladder.config import GuardsConfig
from ladder.guards import choice_baselines, pct_apart, stop_guard, stop_hit_rate, subsample
from ladder.types import Example, MetricValue, Record, Sample

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


def rec(i: int, *extracted: str | None, selected: int | None = None) -> Record:
    return Record(f"e{i}", None, [], [{"text": "", "score": 0.0, "extracted": x} for x in extracted],
                  after={} if selected is None else {"selected": selected})


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
    examples = [ex(i, "ab"[i % 2], ("a", "b")) for i in range(20)]
    # best_of_n: the selected sample is the graded answer, not the unparsed others in its pool.
    records = [rec(i, None, "ba"[i % 2], None, selected=1) for i in range(20)]
    stats, guards = choice_baselines(records, examples, MetricValue(0.1, 0.03, 0.3, 20))
    assert stats == {"chance": 0.5, "majority": 0.5, "unparsed": 0.0}
    assert [g.name for g in guards] == ["below_chance"] and "below chance (0.500" in guards[0].message
    _, fine = choice_baselines(records, examples, MetricValue(0.4, 0.2, 0.6, 20))
    assert fine == []
    assert choice_baselines(records, [ex(i, "a", None) for i in range(20)], MetricValue(0.4, 0.2, 0.6, 20)) == ({}, [])


def scored(i: int, answer: str | None, target: str) -> Record:
    return Record(f"e{i}", target, [], [{"text": "", "score": float(answer == target), "extracted": answer}])


def test_a_constant_answer_is_no_better_than_the_majority_class():
    """SST-2 after sft with defaults: "positive" 300/300 scores 0.550, the majority share; its CI
    reaches above 0.550, so only the constant answer gives it away."""
    targets = ["positive"] * 165 + ["negative"] * 135
    examples = [ex(i, t, ("negative", "positive")) for i, t in enumerate(targets)]
    records = [scored(i, "positive", t) for i, t in enumerate(targets)]
    stats, guards = choice_baselines(records, examples, MetricValue(0.55, 0.493, 0.606, 300))
    assert stats["majority"] == pytest.approx(0.55)
    (g,) = guards
    assert g.name == "no_better_than_majority" and g.level == "warn"
    assert "every answer is 'positive' (300 of 300)" in g.message and "0.550" in g.message
    # Not constant, but the CI's upper end does not clear the majority share: flagged too.
    varied = [scored(i, "negative" if i % 10 == 0 else "positive", t) for i, t in enumerate(targets)]
    _, guards = choice_baselines(varied, examples, MetricValue(0.52, 0.46, 0.55, 300))
    assert [g.name for g in guards] == ["no_better_than_majority"] and "does not clear" in guards[0].message
    # Clearly above the majority share: nothing to say.
    assert choice_baselines(varied, examples, MetricValue(0.7, 0.65, 0.75, 300))[1] == []


def test_below_chance_from_unparsed_answers_blames_the_sampling_not_the_labels():
    """majority_of_8 at temperature 1: 32% unparsed score 0, the parsed answers are right 47% of the
    time (chance 0.5): the score sits below chance because answers are not read, not because they
    are wrong — and the fix for a sampling stage is the sampling, not max_tokens."""
    examples = [ex(i, "ab"[i % 2], ("a", "b")) for i in range(100)]
    answers = [None if i < 32 else ("ab"[i % 2] if (i - 32) % 68 < 32 else "ba"[i % 2]) for i in range(100)]
    records = [scored(i, a, "ab"[i % 2]) for i, a in enumerate(answers)]
    parsed = [float(a == "ab"[i % 2]) for i, a in enumerate(answers) if a is not None]
    assert len(parsed) == 68 and sum(parsed) == 32  # 0.47 among the parsed
    _, guards = choice_baselines(records, examples, MetricValue(0.32, 0.24, 0.42, 100), sampling=True)
    below = next(g for g in guards if g.name == "below_chance")
    assert "32% of 100 answers are none of the choices" in below.message and "0.471" in below.message
    assert "lower the temperature" in below.message and "label mapping" not in below.message
    unparsed = next(g for g in guards if g.name == "unparsed")
    assert "lower the temperature" in unparsed.message and "max_tokens" not in unparsed.message
    # A greedy stage with the same numbers gets the greedy fix.
    _, greedy = choice_baselines(records, examples, MetricValue(0.32, 0.24, 0.42, 100))
    assert "max_tokens" in next(g for g in greedy if g.name == "below_chance").message
    # Parsed answers that are wrong: that is the label mapping or the prompt.
    wrong = [scored(i, "ba"[i % 2], "ab"[i % 2]) for i in range(100)]
    _, guards = choice_baselines(wrong, examples, MetricValue(0.1, 0.05, 0.18, 100), sampling=True)
    assert "label mapping" in next(g for g in guards if g.name == "below_chance").message


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


def test_the_seeded_draw_keeps_data_order_and_repeats_with_its_seed():
    from ladder.guards import seeded_draw

    items = list(range(100))
    drawn = seeded_draw(items, 10, seed=7)
    assert len(drawn) == 10 and drawn == sorted(drawn) and drawn == seeded_draw(items, 10, seed=7)
    assert drawn != seeded_draw(items, 10, seed=8)
    assert seeded_draw(items, "all", seed=7) == items == seeded_draw(items, 100, seed=7)
