"""Judged tasks: a prompts-only data file scored by a judge (the scorer code is the metric code),
several metrics per row, and rows selected by their own metric marked as such.

The judge is an OpenAI-compatible fake server on 127.0.0.1 talked to by the real SDK; the policy is
the scripted backend of tests/scorers (free, deterministic)."""

from __future__ import annotations

import csv
import json
import zlib

import pytest
import yaml

from ladder.config import load_experiment
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from tests.backends.api_support import FAST, KEY, KEY_ENV

POLICY = {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "policy"}
PRICE = 1000.0  # USD per 1M tokens each way: the judge's bill is large enough to check


def judge_spec(srv, name="judge-a", criteria="Is the reply polite?"):
    return {"type": "judge", "criteria": criteria, "template": "{completion}", "instruction": "Grade.",
            "model": {"backend": "openai", "name": name, "base_url": srv.base_url, "api_key_env": KEY_ENV,
                      "max_retries": 0, "concurrency": 64, "price": {"input": PRICE, "output": PRICE}, **FAST}}


def verdict(req, index):
    """A judge that says Yes to some completions by a hash of the text: the share is arbitrary, so
    the row's value can only equal it when every verdict is counted exactly once."""
    if req.model == "judge-b":
        return "No" if req.prompt == "positive" else "Yes"
    return "Yes" if zlib.crc32(req.prompt.encode()) % 3 or req.prompt == "positive" else "No"


def write(tmp_path, metric=None, stages=None, n=30, **more):
    rows = [{"prompt": f"Write a short note number {i}."} for i in range(n)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "j", "results_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"),
              "task": {"data": "prompts.jsonl", "template": "{prompt}", "test_size": 0.5},
              "model": POLICY, "generation": {"max_tokens": 4},
              "stages": stages or [{"type": "zero_shot"}], **more}
    if metric is not None:
        config["metric"] = metric
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def samples(tmp_path, result):
    return read_jsonl(tmp_path / "results" / "j" / result.stage / result.run_id / "samples.jsonl")


def summary(tmp_path):
    with open(tmp_path / "results" / "j" / "summary.csv") as f:
        return {r["stage"]: r for r in csv.DictReader(f)}


@pytest.fixture
def server(monkeypatch):
    from ladder.testing.fake_api import FakeAPIServer

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=verdict) as srv:
        yield srv


def test_a_prompts_only_task_scored_by_a_judge_is_the_share_of_yes_verdicts(tmp_path, server):
    from ladder.testing.fake_api import count_tokens

    (row,) = run_experiment(load_experiment(write(tmp_path, judge_spec(server))))
    asked = [json.loads(json.dumps(r)) for r in server.requests()]
    recs = samples(tmp_path, row)
    assert row.metric.n == len(recs) == 15 and all(r["target"] is None for r in recs)
    # The verdicts the server gave, recomputed from what it was asked: the value is their Yes share.
    texts = [s["text"] for r in recs for s in r["samples"]]
    yes = [verdict(type("R", (), {"prompt": t, "model": "judge-a"}), 0) == "Yes" for t in texts]
    assert row.metric.value == sum(yes) / len(yes)
    assert 0 < row.metric.value < 1 and row.metric_name == "judge"
    # A 0/1 verdict gets a proportion's (Wilson) interval, inside [0, 1].
    assert 0 <= row.metric.ci_low < row.metric.value < row.metric.ci_high <= 1
    # Costed: the policy is free, so the stage's cost is the judge's bill, one call per distinct completion.
    distinct = set(texts)
    assert len(asked) == len(distinct)
    bill = sum((count_tokens("Grade.") + count_tokens(t) + 1) * PRICE / 1e6 for t in distinct)
    assert row.stats.metric_cost_usd == pytest.approx(bill)
    assert row.stats.cost_usd == pytest.approx(bill)
    assert row.stats.metric_prompt_tokens == sum(count_tokens("Grade.") + count_tokens(t) for t in distinct)
    assert row.stats.metric_completion_tokens == len(distinct)
    table = summary(tmp_path)["zero_shot"]
    assert float(table["cost_usd"]) == pytest.approx(bill)
    assert int(table["judge_tokens"]) == row.stats.metric_prompt_tokens + len(distinct)
    assert table["unparsed"] == "0.0"


def test_a_failed_judge_call_makes_the_example_an_error_retried_on_rerun(tmp_path, server):
    server.configure(faults={"500": 1.0})
    path = write(tmp_path, judge_spec(server))
    (row,) = run_experiment(load_experiment(path))
    assert row.metric.n == 0 and row.stats.errors == 15
    assert all(r["error"] and "judge call failed" in r["metric_error"] for r in samples(tmp_path, row))
    server.configure(faults={"500": 0.0})
    (row,) = run_experiment(load_experiment(path))
    assert row.metric.n == 15 and row.stats.errors == 0


def test_unparsed_verdicts_are_counted_and_flagged(tmp_path, monkeypatch):
    from ladder.testing.fake_api import FakeAPIServer

    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=lambda req, i: "Well, it depends" if req.prompt == "neutral" else "Yes") as srv:
        (row,) = run_experiment(load_experiment(write(tmp_path, judge_spec(srv))))
    share = row.stats.unparsed
    assert share > 0.05 and any(g.name == "unparsed" and g.level == "warn" for g in row.guards)
    assert float(summary(tmp_path)["zero_shot"]["unparsed"]) == pytest.approx(share, abs=1e-6)


def test_best_of_n_selected_by_the_metric_is_marked_and_a_different_judge_is_not(tmp_path, server):
    metric = judge_spec(server)
    stages = [{"type": "zero_shot"},
              {"type": "best_of_n", "name": "by_metric", "n": 4, "scorer": judge_spec(server)},
              {"type": "best_of_n", "name": "by_keyword", "n": 4, "scorer": "metric"},
              {"type": "best_of_n", "name": "by_other", "n": 4, "scorer": judge_spec(server, name="judge-b")}]
    rows = {r.stage: r for r in run_experiment(load_experiment(write(tmp_path, metric, stages)))}
    assert rows["by_metric"].selected_by_metric and rows["by_keyword"].selected_by_metric
    assert not rows["by_other"].selected_by_metric and not rows["zero_shot"].selected_by_metric
    # Not an oracle: a judge reads no gold answer; the mark says something else.
    assert not rows["by_metric"].oracle and not rows["by_keyword"].oracle
    table = summary(tmp_path)
    assert table["by_metric"]["selected_by_metric"] == "True"
    assert table["by_other"]["selected_by_metric"] == "False"
    md = (tmp_path / "results" / "j" / "summary.md").read_text()
    assert "by_metric (selected by the metric)" in md and "by_other (selected" not in md
    from ladder.report import build

    page = build(tmp_path / "results" / "j", atlas=False)
    assert "by_metric (selected by the metric)" in page and "by_other (selected" not in page


def test_climb_never_stops_on_a_row_selected_by_the_metric(tmp_path, server):
    from ladder.climb import climb

    stages = [{"type": "best_of_n", "name": "by_metric", "n": 4, "scorer": judge_spec(server)},
              {"type": "best_of_n", "name": "by_other", "n": 4, "scorer": judge_spec(server, name="judge-b")}]
    exp = load_experiment(write(tmp_path, judge_spec(server), stages, escalate={"target": 0.01, "by": "value"}))
    outcome, _ = climb(exp)
    decisions = {r.stage: r.decision for r in outcome.rungs}
    assert decisions["by_metric"] != "stop" and decisions["by_other"] == "stop"


def test_two_judges_as_metrics_give_both_columns_in_summary_and_load(tmp_path, server):
    import ladder

    metrics = {"polite": judge_spec(server), "terse": judge_spec(server, name="judge-b", criteria="Short?")}
    (row,) = run_experiment(load_experiment(write(tmp_path, stages=None, metrics=metrics)))
    recs = samples(tmp_path, row)
    texts = [s["text"] for r in recs for s in r["samples"]]
    terse = sum(t != "positive" for t in texts) / len(texts)  # judge-b's Yes share
    assert row.metric_name == "polite" and row.extra.metrics["terse"].value == pytest.approx(terse)
    table = summary(tmp_path)["zero_shot"]
    assert float(table["terse"]) == pytest.approx(terse)
    assert table["terse_ci_low"] and table["terse_ci_high"]
    # Both judges' calls are spend of the row: one call per distinct completion each.
    assert row.stats.metric_completion_tokens == 2 * len(set(texts)) and row.stats.cost_usd > 0
    frame = ladder.load(tmp_path / "results" / "j").stages
    assert frame["terse"].iloc[0] == pytest.approx(terse) and "terse_ci_low" in frame.columns
    # The report's table has its column, and the sample browser each sample's score by it.
    from ladder.evidence import Evidence
    from ladder.report import build
    from ladder.report_samples import browser_data

    page = build(tmp_path / "results" / "j", atlas=False)
    assert "<th>terse<br>[95% CI]</th>" in page and f"{terse:.3f}" in page
    data = browser_data(Evidence.load(tmp_path / "results" / "j", [row]))
    assert data["sample_keys"][-1] == "terse"
    assert {c["n"][0][-1] for r in data["rows"] for c in r["cells"]} <= {0.0, 1.0}


def write_with_replies(tmp_path, server, stages):
    path = write(tmp_path, judge_spec(server), stages)
    rows = [{"prompt": f"Write a short note number {i}.", "reply": f"Note {i}: hello."} for i in range(30)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_few_shot_on_an_open_ended_task_shows_answers_from_a_named_column(tmp_path, server):
    from ladder.errors import ConfigError

    path = write_with_replies(tmp_path, server, [{"type": "few_shot", "k": 2, "answer_field": "reply"}])
    (row,) = run_experiment(load_experiment(path))
    for rec in samples(tmp_path, row):
        shown = [m["content"] for m in rec["prompt"] if m["role"] == "assistant"]
        assert len(shown) == 2 and all(s.startswith("Note ") for s in shown)
        assert all("hello" not in m["content"] for m in rec["prompt"] if m["role"] == "user")
    # Without a column or YAML shots there is nothing to show: a clear error, nothing written.
    path = write_with_replies(tmp_path / "x", server, [{"type": "few_shot", "k": 2}]) \
        if (tmp_path / "x").mkdir() is None else None
    with pytest.raises(ConfigError, match="answer_field") as err:
        run_experiment(load_experiment(path))
    assert "examples:" in err.value.fix and not (tmp_path / "x" / "results").exists()


def test_few_shot_yaml_examples_take_their_answer_key(tmp_path, server):
    shots = [{"prompt": "Say hi.", "answer": "Hi there!"}]
    (row,) = run_experiment(load_experiment(write(tmp_path, judge_spec(server), [{"type": "few_shot", "examples": shots}])))
    rec = samples(tmp_path, row)[0]
    assert [m["content"] for m in rec["prompt"] if m["role"] == "assistant"] == ["Hi there!"]


def test_sft_on_an_open_ended_task_needs_a_completion_column_or_an_export(tmp_path, server):
    from ladder.errors import ConfigError

    with pytest.raises(ConfigError, match="open-ended") as err:
        run_experiment(load_experiment(write(tmp_path, judge_spec(server), [{"type": "sft"}])))
    assert "completion_field" in err.value.fix and "export" in err.value.fix
    assert not (tmp_path / "results").exists()


def test_ladder_check_prices_the_judge_metric(tmp_path, server):
    from ladder.runner import estimate_run

    stages = [{"type": "zero_shot"}, {"type": "best_of_n", "n": 4, "scorer": judge_spec(server, name="judge-b")}]
    plan = estimate_run(load_experiment(write(tmp_path, judge_spec(server), stages)))
    zero, bon = plan["stages"]
    assert zero["scorer"]["calls"] == 15 and zero["scorer"]["cost_usd"] > 0
    assert zero["cost_usd"] == pytest.approx(zero["scorer"]["cost_usd"])  # the policy is free
    # best_of_n: its own judge on every sample, and the metric's judge on every sample too.
    assert bon["scorer"]["calls"] == 15 * 4 * 2
    assert not (tmp_path / "results").exists()


def test_advice_asks_for_a_held_out_metric_and_shows_it_beside_the_selecting_one(tmp_path, server):
    stages = [{"type": "best_of_n", "n": 4, "scorer": judge_spec(server)}]
    run_experiment(load_experiment(write(tmp_path, judge_spec(server), stages)))
    md = (tmp_path / "results" / "j" / "summary.md").read_text()
    assert "selected by its own metric" in md and "held-out metric: list it under `metrics:`" in md
    metrics = {"polite": judge_spec(server), "held_out": judge_spec(server, name="judge-b")}
    run_experiment(load_experiment(write(tmp_path / "b" if (tmp_path / "b").mkdir() is None else None,
                                         stages=[{"type": "best_of_n", "n": 4, "scorer": judge_spec(server)}],
                                         metrics=metrics)))
    md = (tmp_path / "b" / "results" / "j" / "summary.md").read_text()
    assert "held-out held_out" in md and "polite" in md


def test_a_metric_named_like_a_summary_column_is_refused_before_anything_is_written(tmp_path, server):
    from ladder.errors import ConfigError

    metrics = {"polite": judge_spec(server), "value": judge_spec(server, name="judge-b")}
    with pytest.raises(ConfigError, match="'value' is a summary.csv column"):
        run_experiment(load_experiment(write(tmp_path, metrics=metrics)))
    assert not (tmp_path / "results").exists()


def test_sft_on_an_open_ended_task_trains_on_the_named_completion_column(tmp_path, server):
    from ladder.runner import prepare
    from ladder.stages.sft import drawn_rows

    exp = load_experiment(write_with_replies(tmp_path, server, [{"type": "sft", "completion_field": "reply"}]))
    plan = prepare(exp)
    ctx = plan.context(plan.resolve(exp.stages[0], planning=True), cache=None)
    rows, _, _ = drawn_rows(ctx, exp.stages[0])
    train = {ex.fields["prompt"]: ex.fields["reply"] for ex in plan.task.examples("train")}
    assert rows and all(r.completion == train[r.prompt[-1].content] for r in rows)
