"""best_of_n: the best-of-k estimator, selection, the curve, judge failures and the SFT export."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from ladder.best_of_k import best_of_k, kl_best_of_k, kl_pool, ks, order_weights, select
from ladder.config import load_experiment
from ladder.errors import ConfigError
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from tests.conftest import experiment
from tests.scorers import scripted

POLICY = {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "policy"}


def run(tmp_path, stages, model=POLICY, **kw):
    exp = load_experiment(experiment(tmp_path, "unused", stages=stages, model=model, **kw))
    return run_experiment(exp), exp


def samples_of(tmp_path, result):
    return read_jsonl(tmp_path / "results" / "t" / result.stage / result.run_id / "samples.jsonl")


# -- the estimator ------------------------------------------------------------------------------


def brute_force(scores, values, k):
    """Average over every k-subset of the values at the subset's selected sample (first of ties)."""
    picks = []
    for subset in itertools.combinations(range(len(scores)), k):
        best = max(subset, key=lambda i: (scores[i], -i))
        picks.append(values[best])
    return sum(picks) / len(picks)


def test_best_of_k_matches_enumeration_over_all_subsets_with_ties():
    rng = random.Random(0)
    for _ in range(60):
        n = rng.randint(1, 8)
        scores = [rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(n)]  # few levels: many ties
        values = [rng.random() for _ in range(n)]
        for k in range(1, n + 1):
            assert best_of_k(scores, k) == pytest.approx(brute_force(scores, scores, k), abs=1e-12)
            assert best_of_k(scores, k, values) == pytest.approx(brute_force(scores, values, k), abs=1e-12)
        assert best_of_k(scores, n, values) == values[select(scores)]  # k = N: the selected sample


def test_weights_ks_and_kl():
    for n in (1, 5, 64, 3000):
        for k in ks(n):
            assert sum(order_weights(n, k)) == pytest.approx(1.0, abs=1e-9)
    assert ks(8) == [1, 2, 4, 8] and ks(100) == [1, 2, 4, 8, 16, 32, 64, 100] and ks(1) == [1]
    assert select([0.2, 0.9, 0.9, 0.1]) == 1  # ties: the first
    assert kl_best_of_k(1) == 0.0 and kl_best_of_k(8) == pytest.approx(math.log(8) - 7 / 8)
    with pytest.raises(ValueError):
        order_weights(3, 4)


def kl_by_enumeration(texts, scores, k):
    """KL(best-of-k ‖ pool) by listing every ordered k-tuple of draws from the pool (with
    replacement, each of probability N^-k) and keeping the selector's pick: of equal scores, the first drawn."""
    n = len(texts)
    picked = {}
    for draw in itertools.product(range(n), repeat=k):
        top = max(scores[i] for i in draw)
        best = next(i for i in draw if scores[i] == top)  # ties: the first drawn, as the stage keeps them
        picked[texts[best]] = picked.get(texts[best], 0) + 1 / n ** k
    base = {t: texts.count(t) / n for t in set(texts)}
    return sum(q * math.log(q / base[t]) for t, q in picked.items())


def test_exact_pool_kl_matches_enumeration_and_stays_under_the_bound():
    rng = random.Random(1)
    for _ in range(40):
        n = rng.randint(1, 6)
        texts = [rng.choice("abcd") for _ in range(n)]  # repeats: the point of the exact KL
        level = {t: rng.choice([0.0, 0.5, 1.0]) for t in "abcd"}  # one score per text, ties between texts
        scores = [level[t] for t in texts]
        for k in range(1, 5):
            want = kl_by_enumeration(texts, scores, k)
            assert kl_pool(texts, scores, k) == pytest.approx(want, abs=1e-12)
            assert want <= kl_best_of_k(k) + 1e-12
    # Ties between different texts: the first drawn is kept, so equal scores leave the pool as it is.
    assert kl_pool(["A", "B"], [1.0, 1.0], 2) == pytest.approx(0.0, abs=1e-12)
    assert kl_pool(list("abcdefgh"), [1.0] * 8, 8) == pytest.approx(0.0, abs=1e-12)
    assert kl_pool(list("abcdefgh"), [1.0] * 8, 2) == pytest.approx(kl_by_enumeration(list("abcdefgh"), [1.0] * 8, 2), abs=1e-12)
    # All distinct, best-of-k from a pool of N: the discrete bound log N at most, always under the analytic bound.
    assert kl_pool(list("abcdefgh"), list(range(8)), 1) == pytest.approx(0.0, abs=1e-12)
    # Two answers in 32 samples, the better one half the pool: the best of 32 is it almost surely,
    # a KL of about log 2 where the bound says 2.50.
    texts = ["right"] * 16 + ["wrong"] * 16
    scores = [1.0] * 16 + [0.0] * 16
    assert kl_pool(texts, scores, 32) == pytest.approx(math.log(2), abs=1e-6)
    assert kl_best_of_k(32) == pytest.approx(2.497, abs=1e-3)


# -- the stage ------------------------------------------------------------------------------------


def test_oracle_selection_beats_zero_shot_and_the_curve_climbs(tmp_path):
    results, exp = run(tmp_path, [{"type": "zero_shot"}, {"type": "best_of_n", "n": 8}])
    zero, bon = results
    assert bon.metric_name == zero.metric_name == "choice" and bon.metric.n == zero.metric.n == 40
    assert bon.metric.value > zero.metric.value + 0.3

    # Greedy zero_shot and sample 0 of the pool are the same scripted answer, so the oracle pick
    # can only be as good or better on every single example.
    zero_rows = {r["id"]: r for r in samples_of(tmp_path, zero)}
    bon_rows = samples_of(tmp_path, bon)
    for rec in bon_rows:
        scores = [s["score"] for s in rec["samples"]]
        assert len(scores) == 8 and rec["samples"][0]["text"] == zero_rows[rec["id"]]["samples"][0]["text"]
        assert rec["score"] >= zero_rows[rec["id"]]["score"]
        assert rec["selected"] == scores.index(max(scores))  # first of ties
        assert rec["score"] == max(scores) and all(s["selector"] == s["score"] for s in rec["samples"])

    curve = bon.extra.curve
    assert [p["k"] for p in curve] == [1, 2, 4, 8]
    for a, b in zip(curve, curve[1:]):
        assert b["selector"] >= a["selector"] - 1e-12 and b["metric"] >= a["metric"] - 1e-12
        assert b["kl_bound"] > a["kl_bound"] and b["kl_pool"] <= b["kl_bound"] + 1e-12
    everything = [s["score"] for rec in bon_rows for s in rec["samples"]]
    assert curve[0]["metric"] == pytest.approx(sum(everything) / len(everything))  # best-of-1: any sample
    assert curve[-1]["metric"] == pytest.approx(bon.metric.value)  # best-of-N: the row's number
    assert bon.extra.selector["oracle"] is True
    assert any(g.name == "oracle" for g in bon.guards)

    # Sampling settings: the stage's own defaults, though the experiment decodes greedily.
    stage_json = json.loads((tmp_path / "results/t/best_of_n" / bon.run_id / "stage.json").read_text())
    assert stage_json["generation"]["temperature"] == 1.0 and stage_json["generation"]["n"] == 8
    assert exp.stage_generation(exp.stages[0]).temperature == 0.0

    again, _ = run(tmp_path, [{"type": "zero_shot"}, {"type": "best_of_n", "n": 8}])
    assert again[1].metric == bon.metric


def test_generation_overrides_and_n_in_the_wrong_place(tmp_path):
    exp = load_experiment(experiment(tmp_path, "unused", stages=[
        {"type": "best_of_n", "n": 4, "generation": {"temperature": 0.8, "top_p": 0.95}}], model=POLICY))
    gen = exp.stage_generation(exp.stages[0])
    assert (gen.n, gen.temperature, gen.top_p) == (4, 0.8, 0.95)
    with pytest.raises(ConfigError, match="stage's `n:`"):
        load_experiment(experiment(tmp_path, "unused", stages=[
            {"type": "best_of_n", "generation": {"n": 4}}], model=POLICY))
    with pytest.raises(ConfigError, match="unknown scorer type 'nope'"):
        load_experiment(experiment(tmp_path, "unused", stages=[{"type": "best_of_n", "scorer": "nope"}]))
    with pytest.raises(ConfigError, match="required key 'label' is missing"):
        load_experiment(experiment(tmp_path, "unused", stages=[
            {"type": "best_of_n", "scorer": {"type": "classifier", "model": "x"}}]))
    with pytest.raises(ConfigError, match="unknown key 'lable'"):
        load_experiment(experiment(tmp_path, "unused", stages=[
            {"type": "best_of_n", "scorer": {"type": "classifier", "model": "x", "label": 1, "lable": 1}}]))


def test_judge_parse_failures_are_counted_and_warned(tmp_path):
    scripted.ASKED.clear()
    judge = {"type": "judge", "template": "{completion}",
             "model": {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "judge"}}
    results, _ = run(tmp_path, [{"type": "best_of_n", "n": 8, "scorer": judge}])
    bon = results[0]
    rows = [s for rec in samples_of(tmp_path, bon) for s in rec["samples"]]
    rambles = sum(s["text"] == "neutral" for s in rows)
    assert 0 < rambles < len(rows)
    assert bon.extra.selector["parse_failures"] == rambles
    warn = next(g for g in bon.guards if g.name == "scorer_parse")
    assert warn.level == "warn" and warn.value == rambles
    for s in rows:  # Yes → 1, No → 0, a ramble → failure_score 0 and marked
        assert s["selector"] == (1.0 if s["text"] == "positive" else 0.0)
        assert s["selector_meta"]["parsed"] is (s["text"] != "neutral")
    # 320 completions but three distinct judge prompts: the judge is asked once per distinct one.
    asked = [a for a in scripted.ASKED if a[-1] in scripted.VERDICTS["judge"] and len(a) == 2]
    assert len(asked) == 3 and bon.extra.scorer_calls["generated"] == 3


def test_export_of_test_selections_warns_and_filters(tmp_path):
    results, _ = run(tmp_path, [{"type": "best_of_n", "n": 2, "export": {"split": "test", "min_score": 1.0}}])
    bon = results[0]
    rows = read_jsonl(tmp_path / "results/t/best_of_n" / bon.run_id / "sft.jsonl")
    recs = samples_of(tmp_path, bon)
    assert len(rows) == sum(r["selector"] >= 1.0 for r in recs) == bon.extra.export["rows"]
    assert all(r["score"] == 1.0 for r in rows)
    assert any(g.name == "export" and g.level == "warn" for g in bon.guards)


def test_export_on_train_is_an_sft_data_set_trl_trains_on(tmp_path, random_model):
    """The real hf backend end to end (n samples from num_return_sequences), exporting train
    selections, which trl's SFTTrainer then tokenizes with the loss on the completion only."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    stage = {"type": "best_of_n", "n": 3, "export": {"examples": 6}}
    results, _ = run(tmp_path, [stage], model={"backend": "hf", "name": str(random_model)}, n_test=5)
    bon = results[0]
    assert bon.stats.samples == 15 and all(len(r["samples"]) == 3 for r in samples_of(tmp_path, bon))
    info = bon.extra.export
    assert info["split"] == "train" and info["rows"] == 6
    ds = load_dataset("json", data_files=info["path"], split="train")
    assert {"prompt", "completion", "messages", "score"} <= set(ds.column_names) and len(ds) == 6
    test_prompts = {json.dumps(r["prompt"]) for r in samples_of(tmp_path, bon)}
    assert not test_prompts & {json.dumps(p) for p in ds["prompt"]}  # no test prompt leaks into training

    tok = AutoTokenizer.from_pretrained(random_model)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=2,
                     report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(random_model), args=args,
                         train_dataset=ds, processing_class=tok)
    row = trainer.train_dataset[0]
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert 0 < len(learned) < len(row["input_ids"])  # the prompt is masked, the completion is not
    assert tok.decode(learned).startswith(ds[0]["completion"][0]["content"])
    trainer.train()


# -- a judge behind an API: failures are errors, its spend is counted ---------------------------


def _api_judge(srv, price=1000.0):
    from tests.backends.api_support import FAST, KEY_ENV

    return {"type": "judge", "template": "{completion}", "instruction": "Grade.",
            "model": {"backend": "openai", "name": "priced-judge", "base_url": srv.base_url,
                      "api_key_env": KEY_ENV, "max_retries": 0, "concurrency": 4,
                      "price": {"input": price, "output": price}, **FAST}}


def _yes_for_positive(req, index):
    return "Yes" if req.prompt == "positive" else "No"


def test_a_failed_judge_is_an_error_retried_on_rerun_never_a_fallback(tmp_path, monkeypatch):
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=_yes_for_positive, faults={"500": 1.0}) as srv:
        stages = [{"type": "best_of_n", "n": 4, "scorer": _api_judge(srv)}]
        (down,), _ = run(tmp_path, stages)
        assert srv.stats()["requests"] > 0
        # Every verdict failed: no example was judged, none is reported, nothing was "parsed".
        assert down.metric.n == 0 and down.stats.errors == 40
        assert not any(g.name == "scorer_parse" for g in down.guards)
        assert any(g.name == "errors" and g.level == "warn" for g in down.guards)
        recs = samples_of(tmp_path, down)
        assert recs and all(r["error"] and "judge call failed" in r["scorer_error"] for r in recs)
        assert all("selector" not in s for r in recs for s in r["samples"])  # no fallback selection

        srv.configure(faults={"500": 0.0})
        srv.reset()
        (up,), _ = run(tmp_path, stages)
        assert srv.stats()["requests"] > 0  # the failed verdicts were not cached: asked again
        assert up.stats.errors == 0 and up.metric.n == 40
        assert up.extra.selector["parse_failures"] == 0
        # Judged for real: the selected sample is a "positive" whenever the pool has one.
        for rec in samples_of(tmp_path, up)[-40:]:
            texts = [s["text"] for s in rec["samples"]]
            assert texts[rec["selected"]] == ("positive" if "positive" in texts else texts[0])


def test_judge_spend_counts_in_the_stage_cost_and_in_the_estimate(tmp_path, monkeypatch):
    from ladder.runner import estimate_run
    from ladder.testing.fake_api import FakeAPIServer, count_tokens
    from tests.backends.api_support import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=_yes_for_positive) as srv:
        stages = [{"type": "best_of_n", "n": 4, "scorer": _api_judge(srv)}]
        (bon,), exp = run(tmp_path, stages)
        # The judge's bill by hand from what it was asked: the fake server's tokens, $1,000/M each way.
        recs = samples_of(tmp_path, bon)
        asked = {s["text"] for r in recs for s in r["samples"]}  # the judge sees only the completion
        assert bon.extra.scorer_calls["generated"] == len(asked) == 3
        # The policy is the free scripted backend, so every cent is the judge's.
        assert bon.stats.scorer_cost_usd > 0
        assert bon.stats.cost_usd == pytest.approx(bon.stats.scorer_cost_usd)
        per_sample = [s["selector_meta"].get("cost_usd") for r in recs for s in r["samples"]]
        assert sum(c is not None for c in per_sample) == len(asked)  # each call priced once
        answer = 1  # "Yes"/"No" is one token
        for c in per_sample:
            if c is not None:  # system + user turn in, one word out, at $1,000 per 1M tokens
                assert c == pytest.approx((count_tokens("Grade.") + 1 + answer) * 1000 / 1e6)
        table = (tmp_path / "results/t/summary.csv").read_text()
        assert str(round(bon.stats.cost_usd, 6)) in table

        plan = estimate_run(exp)
        est = plan["stages"][0]
        assert est["scorer"]["calls"] == 40 * 4 and est["scorer"]["cost_usd"] > 0
        assert est["cost_usd"] == pytest.approx(est["scorer"]["cost_usd"])
        assert est["scorer"]["cost_usd"] >= bon.stats.scorer_cost_usd  # an estimate is an upper bound


def test_a_batch_judge_is_estimated_at_its_batch_price(tmp_path, monkeypatch):
    """`ladder check` prices a judge on `batch: true` as the run will pay it: half the list price."""
    from ladder.runner import estimate_run
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=_yes_for_positive) as srv:
        costs = {}
        for batch in (False, True):
            judge = _api_judge(srv)
            judge["model"]["batch"] = batch
            path = experiment(tmp_path / str(batch), "unused", model=POLICY,
                              stages=[{"type": "best_of_n", "n": 4, "scorer": judge}])
            est = estimate_run(load_experiment(path))["stages"][0]
            costs[batch] = est
        standard, batched = costs[False]["scorer"], costs[True]["scorer"]
        assert standard["cost_usd"] > 0 and standard["cost_usd"] == standard["cost_usd_standard"]
        assert batched["cost_usd_standard"] == pytest.approx(standard["cost_usd"])
        assert batched["cost_usd"] == pytest.approx(standard["cost_usd"] * 0.5)
        assert costs[True]["cost_usd"] == pytest.approx(batched["cost_usd"])  # the run's total pays the batch price


def test_judge_tokens_count_in_the_stage_tokens_as_its_cost_does(tmp_path, monkeypatch):
    # Today the judge's calls are in cost_usd but not in prompt_tokens / completion_tokens.
    import csv

    from ladder.testing.fake_api import FakeAPIServer, count_tokens
    from tests.backends.api_support import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=_yes_for_positive) as srv:
        (bon,), _ = run(tmp_path, [{"type": "best_of_n", "n": 4, "scorer": _api_judge(srv)}])
    recs = samples_of(tmp_path, bon)
    asked = {s["text"] for r in recs for s in r["samples"]}  # the judge sees only the completion, once each
    own_prompt = sum(s.get("prompt_tokens", 0) for r in recs for s in r["samples"])
    own_completion = sum(s.get("completion_tokens", 0) for r in recs for s in r["samples"])
    # Each call: system + user turn in ("Grade." and the one-word completion), one word ("Yes"/"No") out.
    assert bon.stats.scorer_prompt_tokens == len(asked) * (count_tokens("Grade.") + 1)
    assert bon.stats.scorer_completion_tokens == len(asked)
    assert bon.stats.prompt_tokens == own_prompt + bon.stats.scorer_prompt_tokens
    assert bon.stats.completion_tokens == own_completion + bon.stats.scorer_completion_tokens
    (row,) = csv.DictReader((tmp_path / "results/t/summary.csv").open())
    assert int(row["prompt_tokens"]) == bon.stats.prompt_tokens > own_prompt
