"""Subsample determinism and size warnings; the stop-hit rate."""

from ladder.config import GuardsConfig
from ladder.guards import stop_guard, stop_hit_rate, subsample
from ladder.types import Sample

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
