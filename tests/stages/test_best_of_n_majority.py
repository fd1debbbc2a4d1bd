"""best_of_n's select: majority: the vote, majority@k, and the configs it refuses."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

import ladder.best_of_k as best_of_k_module
from ladder.best_of_k import majority, majority_curve, majority_of_k
from ladder.config import load_experiment
from ladder.errors import ConfigError
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from tests.conftest import experiment

POLICY = {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "policy"}


def test_the_vote_against_a_hand_count():
    assert majority(["18", "20", "20", None, "18", "20"]) == 1  # 20 ×3 beats 18 ×2: its first sample
    assert majority(["18", "20", "20", "18"]) == 0  # 2 – 2: the answer seen first
    assert majority(["20", "18", "18", "20"]) == 0
    assert majority([None, "7", None, "7", None]) == 0  # "no answer" ×3 wins, as lm-eval's "[invalid]"
    assert majority(["540.00", "540", "540"]) == 1  # answers are compared as extracted strings
    assert majority(["a"]) == 0


def reference_majority(answers):
    """lm-eval's filter: Counter(...).most_common(1)[0][0], then its first sample."""
    top = Counter(answers).most_common(1)[0][0]
    return answers.index(top)


def enumerate_all(answers, values, k):
    picks = []
    for subset in itertools.combinations(range(len(answers)), k):
        sub = [answers[i] for i in subset]
        picks.append(values[subset[reference_majority(sub)]])
    return sum(picks) / len(picks)


def test_majority_of_k_is_the_mean_over_every_subset():
    rng = random.Random(0)
    for _ in range(80):
        n = rng.randint(1, 9)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
        values = [rng.random() for _ in range(n)]
        for k in range(1, n + 1):
            got, exact = majority_of_k(answers, values, k)
            assert exact and got == pytest.approx(enumerate_all(answers, values, k), abs=1e-12)
        assert majority_of_k(answers, values, n)[0] == values[majority(answers)]  # k = N: the stage's pick
        assert majority_of_k(answers, values, 1)[0] == pytest.approx(sum(values) / n)  # k = 1: any sample


def test_monte_carlo_where_enumeration_is_too_big(monkeypatch):
    rng = random.Random(1)
    answers = [rng.choice("aabbc") for _ in range(12)]
    values = [float(a == "a") for a in answers]
    truth = enumerate_all(answers, values, 6)  # 924 subsets
    monkeypatch.setattr(best_of_k_module, "MAJORITY_EXACT_SUBSETS", 100)
    got, exact = majority_of_k(answers, values, 6, seed=3)
    assert not exact and got == pytest.approx(truth, abs=0.05)  # 1,000 draws: SE ≤ 0.016
    assert majority_of_k(answers, values, 6, seed=3)[0] == got  # seeded
    assert majority_of_k(answers, values, 12, seed=3) == (values[majority(answers)], True)
    points, how = majority_curve([(answers, values)], 12)
    assert [p["k"] for p in points] == [1, 2, 4, 8, 12] and how.startswith("Monte Carlo")


def run(tmp_path, stages, metric=None):
    extra = {"metric": metric} if metric else {}
    exp = load_experiment(experiment(tmp_path, "unused", stages=stages, model=POLICY, **extra))
    return run_experiment(exp)


def test_the_stage_votes_on_the_choice_each_sample_names(tmp_path):
    zero, vote = run(tmp_path, [{"type": "zero_shot"}, {"type": "best_of_n", "n": 7, "select": "majority"}])
    rows = read_jsonl(tmp_path / "results/t/best_of_n" / vote.run_id / "samples.jsonl")
    assert vote.metric.n == zero.metric.n == len(rows) == 40
    for rec in rows:
        labels = [s["extracted"] for s in rec["samples"]]  # the scripted policy says one label a sample
        assert labels == [s["text"] for s in rec["samples"]]
        assert rec["selected"] == reference_majority(labels) and rec["answer"] == labels[rec["selected"]]
        assert rec["score"] == float(rec["answer"] == rec["target"])
        assert rec["selector"] == labels.count(rec["answer"]) / 7
    assert vote.metric.value == pytest.approx(sum(r["score"] for r in rows) / 40)
    assert vote.extra.selector["name"] == "majority" and vote.extra.selector["oracle"] is False
    assert not any(g.name == "oracle" for g in vote.guards)


@pytest.mark.parametrize("stage,metric,message", [
    ({"select": "majority"}, "includes",
     "metric 'includes' extracts none"),
    ({"select": "majority", "scorer": {"type": "python", "function": "x:y"}}, None,
     "uses no scorer: remove `scorer:`"),
    ({"select": "vote"}, None, "'scorer' or 'majority'"),
])
def test_refused_before_anything_runs(tmp_path, stage, metric, message):
    extra = {"metric": metric} if metric else {}
    with pytest.raises(ConfigError, match=message):
        load_experiment(experiment(tmp_path, "unused", stages=[{"type": "best_of_n", **stage}], model=POLICY,
                                   **extra))


def test_export_of_a_vote_and_the_report_draws_majority_at_k(tmp_path):
    from ladder.report import curves_of

    oracle, vote = run(tmp_path, [{"type": "best_of_n", "n": 4},
                                  {"type": "best_of_n", "name": "vote", "n": 4, "select": "majority",
                                   "export": {"split": "test", "min_score": 0.75}}])
    rows = read_jsonl(tmp_path / "results/t/vote" / vote.run_id / "sft.jsonl")
    recs = read_jsonl(tmp_path / "results/t/vote" / vote.run_id / "samples.jsonl")
    confident = [r for r in recs if r["selector"] >= 0.75]  # 3 or 4 of the 4 samples agree
    assert [r["id"] for r in rows] == [r["id"] for r in confident]
    assert all(row["completion"][0]["content"] == r["answer"] for row, r in zip(rows, confident))
    for result, lines in ((oracle, {"selector", "metric", "majority"}), (vote, {"majority", "oracle_best_of_k"})):
        (curve,) = [c for c in curves_of(result.extra.to_dict()) if c.name == "curve"]
        assert lines <= set(curve.series) and curve.x == [1, 2, 4]
