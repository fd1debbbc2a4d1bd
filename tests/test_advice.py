"""Paired differences (against hand computations) and each next-step rule (fires / stays quiet)."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from ladder import advice, evidence
from ladder.evidence import Evidence
from ladder.stats import Z95, paired_diff, t95
from ladder.store import JsonlWriter, records_digest, write_json
from ladder.table import read_summary, write_summary
from ladder.types import Guard, MetricValue, StageResult


def test_paired_diff_matches_hand_computation():
    a, b = [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]
    # d = [1, 0, 0, 1, 0]: mean 0.4, sd = sqrt((2·0.6² + 3·0.4²)/4) = sqrt(0.3), t(df=4) = 2.776
    half = 2.7764451051977987 * math.sqrt(0.3) / math.sqrt(5)  # t(0.975, 4) to double precision
    d = paired_diff(a, b)
    assert d.n == 5 and abs(d.value - 0.4) < 1e-12
    assert abs(d.ci_low - (0.4 - half)) < 1e-12 and abs(d.ci_high - (0.4 + half)) < 1e-12


def test_paired_diff_large_n_uses_t_quantile_and_beats_unpaired():
    rng = random.Random(0)
    base = [rng.random() for _ in range(400)]
    a = [x + 0.05 + rng.gauss(0, 0.02) for x in base]  # a shares b's per-example difficulty
    d = paired_diff(a, base)
    diffs = [x - y for x, y in zip(a, base)]
    mean = sum(diffs) / 400
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 399)
    assert abs(d.ci_high - (mean + t95(399) * sd / 20)) < 1e-12 and t95(399) > Z95  # Student t, not z
    assert d.ci_low > 0.04 and d.ci_high - d.ci_low < 0.01  # unpaired CIs of width ~0.06 would overlap


def test_paired_diff_edge_cases():
    assert paired_diff([], []).n == 0 and math.isnan(paired_diff([], []).value)
    one = paired_diff([1.0], [0.0])
    assert one.value == 1.0 and math.isnan(one.ci_low)
    same = paired_diff([1, 0, 1], [1, 0, 1])
    assert (same.value, same.ci_low, same.ci_high) == (0, 0, 0)
    with pytest.raises(ValueError):
        paired_diff([1, 2], [1])


# ---------------------------------------------------------------------------------------------
# A results folder written by hand: stage name → (type, per-example scores, guards, stats)


def results_folder(tmp_path, stages: dict, climb: dict | None = None, min_n: int = 300, oracles: tuple = ()):
    folder = tmp_path / "exp"
    results = []
    for name, spec in stages.items():
        type_, scores = spec[0], spec[1]
        guards = spec[2] if len(spec) > 2 else []
        stats = spec[3] if len(spec) > 3 else {}
        extra = spec[4] if len(spec) > 4 else {}
        run_dir = folder / name / "r1"
        with JsonlWriter(run_dir / "samples.jsonl") as out:
            out.write([{"id": f"ex{i}", "score": s, "error": s is None, "samples": []}
                       for i, s in enumerate(scores)])
        ok = [s for s in scores if s is not None]
        m = sum(ok) / len(ok)
        result = StageResult(name, type_, "r1", "choice", MetricValue(m, m - 0.05, m + 0.05, len(ok)),
                             guards, {"errors": 0, **stats}, extra, oracle=name in oracles)
        write_json(run_dir / "metrics.json", result.to_dict())
        results.append(result)
    (folder / "experiment.yaml").write_text(f"guards: {{min_n: {min_n}}}\n")
    if climb is not None:
        write_json(folder / "climb.json", climb)
    write_summary(folder, results)
    return folder


def scores(p: float, n: int = 300, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < p) for _ in range(n)]


def ev_of(tmp_path, stages, **kw) -> Evidence:
    return Evidence.load(results_folder(tmp_path, stages, **kw))


def test_summary_has_paired_columns_joined_by_id(tmp_path):
    zero = scores(0.4)
    better = [1.0 if i % 3 == 0 else s for i, s in enumerate(zero)]
    better[5] = None  # failed in this stage: paired on the other 299
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", better),
                                       "fs2": ("few_shot", list(reversed(zero)))})
    rows = read_summary(folder)
    keep = [i for i in range(300) if i != 5]
    want = paired_diff([better[i] for i in keep], [zero[i] for i in keep])
    assert rows[0]["diff_prev"] == "" and rows[0]["diff_zero"] == ""
    assert rows[1]["diff_prev"] == round(want.value, 4) and rows[1]["diff_prev_n"] == "299"
    assert rows[1]["diff_prev_ci_low"] == round(want.ci_low, 4) and rows[1]["diff_zero"] == rows[1]["diff_prev"]
    assert rows[2]["diff_prev_n"] == "299" and rows[2]["diff_zero_n"] == "300"
    md = (folder / "summary.md").read_text()
    assert f"{want.value:+.3f} [{want.ci_low:+.3f}, {want.ci_high:+.3f}]" in md
    with open(folder / "summary.csv") as f:
        assert "diff_zero_ci_high" in next(csv.reader(f))


def rules_fired(ev: Evidence) -> set[str]:
    return {s.rule for s in advice.next_steps(ev)}


def test_retry_errors(tmp_path):
    ev = ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5), [], {"errors": 3})})
    (step,) = advice.retry_errors(ev)
    assert "zero_shot (3)" in step.text and "Re-run" in step.text
    assert advice.retry_errors(ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5))})) == []


def test_damaged_samples(tmp_path):
    # metrics.json records what it summarised; a samples.jsonl truncated afterwards must not give
    # a Δ over fewer examples than the row's n without a word.
    a, b = scores(0.7, seed=1), scores(0.5, seed=2)
    recorded = {name: {"records": {"count": 300, "digest": records_digest({f"ex{i}": s for i, s in enumerate(v)})}}
                for name, v in (("zero_shot", b), ("few_shot", a))}
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", b, [], recorded["zero_shot"]),
                                       "few_shot": ("few_shot", a, [], recorded["few_shot"])})
    intact = Evidence.load(folder)
    assert advice.damaged_samples(intact) == [] and not any(g.name == advice.DAMAGED for r in intact.results
                                                             for g in r.guards)
    path = folder / "few_shot/r1/samples.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:74]))
    ev = Evidence.load(folder)
    few = ev.results[1]
    assert few.metric.n == 300 and ev.diff(few, ev.results[0]).n == 74  # the disagreement, now flagged:
    (step,) = advice.damaged_samples(ev)
    assert "few_shot" in step.text and "zero_shot" not in step.text and "run the same command again" in step.text
    (guard,) = [g for g in few.guards if g.name == advice.DAMAGED]
    assert guard.level == "warn" and "74 scored examples where metrics.json summarised 300" in guard.message
    # The same count with an edited score is caught by the digest.
    rows = [json.loads(line) for line in (folder / "zero_shot/r1/samples.jsonl").read_text().splitlines()]
    rows[0]["score"] = 1.0 - rows[0]["score"]
    (folder / "zero_shot/r1/samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "it was edited" in evidence.samples_mismatch(folder, Evidence.load(folder).results[0])


def test_stop_hits_low(tmp_path):
    warn = Guard("stop_hit", "warn", "low", 0.4)
    info = Guard("stop_hit", "info", "cut", 0.7)
    ev = ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5), [warn]), "few_shot": ("few_shot", scores(0.5), [info])})
    texts = [s.text for s in advice.stop_hits_low(ev)]
    assert len(texts) == 2 and "zero_shot: as few as 40%" in texts[0] and "stop:" in texts[0]
    assert "few_shot: only 70%" in texts[1] and "raise max_tokens" in texts[1]
    ok = ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5), [Guard("stop_hit", "ok", "fine", 1.0)])})
    assert advice.stop_hits_low(ok) == []


def test_evaluate_more(tmp_path):
    (step,) = advice.evaluate_more(ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5, n=40))}))
    assert "only 40 examples" in step.text and "at least 300" in step.text
    assert advice.evaluate_more(ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5, n=40))}, min_n=30)) == []
    assert advice.evaluate_more(ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5))})) == []


def test_context_trimmed(tmp_path):
    ev = ev_of(tmp_path, {"few_shot": ("few_shot", scores(0.5), [Guard("context", "warn", "dropped shots")])})
    (step,) = advice.context_trimmed(ev)
    assert step.text.startswith("few_shot:") and "lower k" in step.text
    assert advice.context_trimmed(ev_of(tmp_path, {"few_shot": ("few_shot", scores(0.5))})) == []


def test_few_shot_worse(tmp_path):
    zero = scores(0.7)
    worse = [0.0 if i % 2 else s for i, s in enumerate(zero)]
    ev = ev_of(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", worse)})
    (step,) = advice.few_shot_worse(ev)
    assert "few_shot is worse than zero_shot" in step.text and "shot formatting" in step.text
    noisy = [1.0 - s if i < 6 else s for i, s in enumerate(zero)]  # a few flips either way: not significant
    assert advice.few_shot_worse(ev_of(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", noisy)})) == []


def test_loss_above_chance(tmp_path):
    chance = Guard("chance_loss", "warn", "test loss 1.2 ≥ chance 1.0986", 1.2)
    ev = ev_of(tmp_path, {"zero_shot": ("zero_shot", scores(0.5)), "sft": ("sft", scores(0.5), [chance])})
    (step,) = advice.loss_above_chance(ev)
    assert step.text.startswith("sft:") and "learning rate" in step.text and "epochs" in step.text
    fine = Guard("chance_loss", "ok", "below chance", 0.4)
    assert advice.loss_above_chance(ev_of(tmp_path, {"sft": ("sft", scores(0.5), [fine])})) == []


def test_distil_best_of_n(tmp_path):
    zero = scores(0.4)
    bon = [1.0 if i % 4 else s for i, s in enumerate(zero)]
    stages = {"zero_shot": ("zero_shot", zero), "best_of_n": ("best_of_n", bon)}
    (step,) = advice.distil_best_of_n(ev_of(tmp_path, stages))
    assert "best_of_n beats zero_shot" in step.text and "sft" in step.text
    caught_up = {**stages, "sft": ("sft", [1.0] * 300)}
    assert advice.distil_best_of_n(ev_of(tmp_path, caught_up)) == []
    close = {"zero_shot": ("zero_shot", zero), "best_of_n": ("best_of_n", [1.0 if i < 3 else s for i, s in enumerate(zero)])}
    assert advice.distil_best_of_n(ev_of(tmp_path, close)) == []
    # An oracle best_of_n (its selector reads the test answers) is an upper bound, and says so.
    (step,) = advice.distil_best_of_n(ev_of(tmp_path, stages, oracles=("best_of_n",)))
    assert "but it is an oracle" in step.text and "upper bound" in step.text


def test_rl_below_best_of_n(tmp_path):
    bon = scores(0.8)
    rl = [0.0 if i % 3 == 0 else s for i, s in enumerate(bon)]
    (step,) = advice.rl_below_best_of_n(ev_of(tmp_path, {"best_of_n": ("best_of_n", bon), "rl": ("rl", rl)}))
    assert "rl is below best_of_n" in step.text and "reward" in step.text and "learning rate" in step.text
    assert advice.rl_below_best_of_n(ev_of(tmp_path, {"best_of_n": ("best_of_n", bon), "rl": ("rl", bon)})) == []


def test_rl_below_its_own_best_of_n(tmp_path):
    """The rl stage's own best-of-N (same reward, same examples) is what it is judged against."""
    below = {"n": 8, "oracle": False, "diff": {"value": -0.2, "ci_low": -0.25, "ci_high": -0.15, "n": 300}}
    rl = ("rl", scores(0.6), [], {}, {"best_of_n": below})
    (step,) = advice.rl_below_best_of_n(ev_of(tmp_path, {"rl": rl}))
    assert "below best-of-8 with the same reward" in step.text and "learning rate" in step.text
    oracle = ("rl", scores(0.6), [], {}, {"best_of_n": {**below, "oracle": True}})
    (step,) = advice.rl_below_best_of_n(ev_of(tmp_path, {"rl": oracle}))
    assert "upper bound" in step.text
    level = {**below, "diff": {"value": 0.0, "ci_low": -0.05, "ci_high": 0.05, "n": 300}}
    assert advice.rl_below_best_of_n(ev_of(tmp_path, {"rl": ("rl", scores(0.6), [], {}, {"best_of_n": level})})) == []
    # With its own best-of-N, rl never gets the "run best_of_n first" advice.
    assert advice.best_of_n_before_rl(ev_of(tmp_path, {"rl": rl})) == []


def test_best_of_n_before_rl(tmp_path):
    (step,) = advice.best_of_n_before_rl(ev_of(tmp_path, {"rl": ("rl", scores(0.5))}))
    assert "run best_of_n with the same reward" in step.text
    both = {"best_of_n": ("best_of_n", scores(0.5)), "rl": ("rl", scores(0.5))}
    assert advice.best_of_n_before_rl(ev_of(tmp_path, both)) == []


def test_no_rung_helps(tmp_path):
    zero = scores(0.5)
    (step,) = advice.no_rung_helps(ev_of(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", zero)}))
    assert "no rung is clearly above zero_shot" in step.text and "ladder atlas" in step.text
    better = [1.0] * 300
    assert advice.no_rung_helps(ev_of(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", better)})) == []
    # An oracle far above zero_shot is not a rung that helps.
    stages = {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", zero), "best_of_n": ("best_of_n", better)}
    (step,) = advice.no_rung_helps(ev_of(tmp_path, stages, oracles=("best_of_n",)))
    assert "no rung is clearly above zero_shot" in step.text
    assert advice.no_rung_helps(ev_of(tmp_path, stages)) == []


def test_identical_stages_print_zero_not_negative_zero(tmp_path):
    zero = scores(0.5)
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", zero), "again": ("zero_shot", list(zero))})
    md = (folder / "summary.md").read_text()
    assert "-0.000" not in md and "| identical outputs |" in md  # not a zero-width "0.000 [0.000, 0.000]"
    assert advice.describe(MetricValue(-0.0, -0.0, -0.0, 300)) == "identical outputs, n=300"
    assert advice.describe(MetricValue(-0.0004, -0.02, 0.01, 300)) == "0.000 [-0.020, +0.010], n=300"


def test_k_way_columns_and_oracle_marker(tmp_path):
    k_way = {"chance": 1 / 3, "majority": 0.4, "unparsed": 0.09}
    stages = {"zero_shot": ("zero_shot", scores(0.5), [], k_way), "best_of_n": ("best_of_n", scores(0.9), [], k_way),
              "reward_model": ("reward_model", scores(0.7, n=155))}
    folder = results_folder(tmp_path, stages, oracles=("best_of_n",))
    rows = read_summary(folder)
    assert [r["oracle"] for r in rows] == [False, True, False]
    assert rows[0]["chance"] == pytest.approx(1 / 3, abs=1e-6) and rows[0]["majority"] == 0.4
    assert rows[0]["unparsed"] == 0.09 and rows[2]["chance"] == ""
    md = (folder / "summary.md").read_text()
    assert "| best_of_n (oracle) |" in md and "| 0.333 / 0.400 | 9% |" in md and "(oracle): reads" in md
    # reward_model's n counts held-out pairs, not test examples: no "evaluate more" for it.
    assert advice.evaluate_more(Evidence.load(folder)) == []


def test_target_not_reached(tmp_path):
    climb = {"target": 0.9, "by": "ci_low", "reached": False, "exhausted": True,
             "rungs": [{"stage": "zero_shot"}, {"stage": "few_shot"}]}
    stages = {"zero_shot": ("zero_shot", scores(0.5)), "few_shot": ("few_shot", scores(0.6))}
    (step,) = advice.target_not_reached(ev_of(tmp_path, stages, climb=climb))
    assert "ci_low ≥ 0.9" in step.text
    assert advice.target_not_reached(ev_of(tmp_path, stages, climb={**climb, "reached": True})) == []
    later = {**stages, "best_of_n": ("best_of_n", scores(0.7))}  # a `ladder run` after the climb added a rung
    assert advice.target_not_reached(ev_of(tmp_path, later, climb=climb)) == []


def test_every_rule_is_exercised_and_summary_ends_with_steps(tmp_path):
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert {rule.__name__ for rule in advice.RULES} <= tested
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", scores(0.5, n=40), [], {"errors": 2})})
    md = (folder / "summary.md").read_text()
    tail = md.rstrip().splitlines()[-3:]
    assert tail[0] == "Next steps:" and tail[1].endswith("_(retry_errors)_") and tail[2].endswith("_(evaluate_more)_")
    assert rules_fired(Evidence.load(folder)) == {"retry_errors", "evaluate_more"}


def test_quiet_experiment_says_nothing_flagged(tmp_path):
    zero = scores(0.4)
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", [1.0] * 300)})
    assert advice.next_steps(Evidence.load(folder)) == []
    assert "nothing flagged" in (folder / "summary.md").read_text()
    assert json.loads(json.dumps(read_summary(folder)[1]))["diff_zero"] > 0.5


def test_underpowered(tmp_path):
    # Two independent 0.5 coin-flip rungs: the CI of their difference straddles 0 at n=300, so the
    # rule quotes the MDE and the n needed for the observed difference, from the same formula.
    from ladder.power import diff_mde, n_needed, sd_of

    stages = {"zero_shot": ("zero_shot", scores(0.5, seed=1)), "few_shot": ("few_shot", scores(0.5, seed=2))}
    ev = ev_of(tmp_path, stages)
    d = ev.diff(ev.results[1], ev.results[0])
    assert d.ci_low < 0 < d.ci_high
    (step,) = advice.underpowered(ev)
    assert f"detects only ±{diff_mde(d):.3f}" in step.text
    if abs(d.value) >= advice.MIN_EFFECT:
        assert f"you need n ≈ {n_needed(sd_of(d), d.value):,}" in step.text
    clear = {"zero_shot": ("zero_shot", scores(0.3)), "few_shot": ("few_shot", [1.0] * 300)}
    assert advice.underpowered(ev_of(tmp_path / "clear", clear)) == []


def test_no_better_than_majority(tmp_path):
    collapsed = Guard("no_better_than_majority", "warn", "every answer is 'positive' (300 of 300), ...", 0.55)
    stages = {"zero_shot": ("zero_shot", scores(0.45)), "sft": ("sft", scores(0.55, seed=2), [collapsed])}
    folder = results_folder(tmp_path, stages)
    (step,) = advice.no_better_than_majority(Evidence.load(folder))
    assert step.text.startswith("sft: no better than always answering the majority class (0.550)")
    assert "nothing flagged" not in (folder / "summary.md").read_text()


def test_unread_answers(tmp_path):
    """A table whose flags say "below_chance; unparsed" never ends in "nothing flagged": the advice
    repeats the guard's diagnosis and fix (once per stage: below_chance already names the unparsed)."""
    below = Guard("below_chance", "warn", "0.320 [0.240, 0.420] is below chance (0.500 ...) because 32% of 300 "
                  "answers are none of the choices ... lower the temperature (or top_p)", 0.5)
    unparsed = Guard("unparsed", "warn", "96 of 300 answers (32%) are none of the choices and score 0: lower the "
                     "temperature", 0.32)
    stages = {"zero_shot": ("zero_shot", scores(0.5)), "best_of_n": ("best_of_n", scores(0.32), [below, unparsed]),
              "few_shot": ("few_shot", scores(0.5, seed=3), [unparsed])}
    folder = results_folder(tmp_path, stages)
    assert read_summary(folder)[1]["flags"] == "below_chance; unparsed"
    steps = advice.unread_answers(Evidence.load(folder))
    assert [(s.rule, s.text.split(":")[0]) for s in steps] == [("below_chance", "best_of_n"), ("unparsed", "few_shot")]
    assert "lower the temperature" in steps[0].text
    md = (folder / "summary.md").read_text()
    assert "nothing flagged" not in md and "_(below_chance)_" in md


def test_other_warnings(tmp_path):
    """Every warning guard gets a step: one no rule knows is passed on with its message."""
    odd = Guard("template_eos", "warn", "the chat template never emits EOS", 1.0)
    big = Guard("subsample", "warn", "evaluating 5000 examples: more than you need", 5000.0)
    stages = {"zero_shot": ("zero_shot", scores(0.5), [odd, big]), "few_shot": ("few_shot", scores(0.5), [big])}
    folder = results_folder(tmp_path, stages)
    steps = advice.other_warnings(Evidence.load(folder))
    assert [s.text for s in steps] == ["zero_shot: the chat template never emits EOS.",
                                       "zero_shot, few_shot: evaluating 5000 examples: more than you need."]
    assert "nothing flagged" not in (folder / "summary.md").read_text()
    # A small subsample is evaluate_more's: not said twice.
    small = Guard("subsample", "warn", "evaluating 40 examples", 40.0)
    assert advice.other_warnings(ev_of(tmp_path / "b", {"zero_shot": ("zero_shot", scores(0.5, n=40), [small])})) == []


def test_selected_by_metric(tmp_path):
    # A best_of_n row picked by the judge that scores it: optimistic. Without a second metric the
    # step asks for one; with one (`metrics:`) it shows the two side by side.
    stages = {"zero_shot": ("zero_shot", scores(0.4)), "best_of_n": ("best_of_n", scores(0.8))}
    ev = ev_of(tmp_path, stages)
    ev.results[1].selected_by_metric = True
    (step,) = advice.selected_by_metric(ev)
    assert "best_of_n was selected by its own metric" in step.text and "`metrics:`" in step.text
    held = {"metrics": {"held_out": {"value": 0.55, "ci_low": 0.5, "ci_high": 0.6, "n": 300}}}
    ev = ev_of(tmp_path / "b", {**stages, "best_of_n": ("best_of_n", scores(0.8), [], {}, held)})
    ev.results[1].selected_by_metric = True
    (step,) = advice.selected_by_metric(ev)
    assert "held-out held_out 0.550 [0.500, 0.600]" in step.text
    ev.results[1].selected_by_metric = False
    assert advice.selected_by_metric(ev) == []


def test_wrapped_next_steps_indent_under_their_bullet():
    """A step longer than the terminal continues under its own text, not at column 0."""
    import io

    from rich.console import Console

    from ladder.advice import Step, print_next_steps

    console = Console(width=60, file=io.StringIO(), record=True, color_system=None)
    long = "run best_of_n with the same reward first: it shows what high-reward samples look like"
    print_next_steps([Step("best_of_n_before_rl", long), Step("evaluate_more", "evaluate more examples")],
                     console=console)
    lines = console.export_text().splitlines()
    assert lines[0] == "Next steps" and lines[1].startswith("  • run best_of_n"), lines
    bullet_text = lines[1].index("run")
    wrapped = [line for line in lines[2:] if not line.lstrip().startswith("•")]
    assert wrapped and all(line[:bullet_text].strip() == "" for line in wrapped), lines
    assert all(len(line) <= 60 for line in lines)
