"""A second model in the loop (red-teaming): rung model → respondent → judge, all on 127.0.0.1.

One fake OpenAI-compatible server plays the three models, by the model name of each request: the
attacker writes "attack <n>", the target replies "rude <n>" or "polite <n>" (planned per n), and the
judge says Yes when the message it is shown to judge is rude. So the row's value must be exactly
the planned share of rude replies."""

from __future__ import annotations

import json
import re
import shutil
import zlib

import pytest
import yaml

from ladder.config import load_experiment
from ladder.runner import estimate_run, run_experiment
from ladder.store import read_jsonl
from tests.backends.api_support import FAST, KEY_ENV
from tests.metrics.test_pairwise import key  # noqa: F401 (the fixture: the fake server's API key set)

pytestmark = pytest.mark.usefixtures("key")


def rude(number: str) -> bool:
    return zlib.crc32(number.encode()) % 3 == 0


def respond(req, index):
    if req.model == "attacker":
        return f"attack {req.prompt.split()[-1]}"
    if req.model == "target":
        number = req.prompt.split()[-1]
        return f"{'rude' if rude(number) else 'polite'} {number}"
    reply = re.search(r"\[Reply to the message\]\n(.*)\n", req.prompt).group(1)
    return "Yes" if reply.startswith("rude") else "No"


def api(srv, name):
    return {"backend": "openai", "name": name, "base_url": srv.base_url, "api_key_env": KEY_ENV,
            "max_retries": 0, "concurrency": 64, "price": {"input": 1000.0, "output": 1000.0}, **FAST}


def write(tmp_path, srv, respondent=True, metric=None, n=30, instruction="You are a helpful assistant."):
    rows = [{"topic": f"topic {i}"} for i in range(n)]
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "rt", "results_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"),
              "task": {"data": "topics.jsonl", "target": None, "template": "Provoke a rude reply about {topic}",
                       "test_size": 0.5},
              "model": api(srv, "attacker"),
              "metric": metric or {"type": "judge", "criteria": "Is the reply rude?", "model": api(srv, "judge")},
              "stages": [{"type": "zero_shot"}]}
    if respondent:
        config["respondent"] = {"model": {"name": "target"}, "instruction": instruction}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_metric_scores_the_respondents_reply_cached_and_costed(tmp_path):
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond) as srv:
        (row,) = run_experiment(load_experiment(write(tmp_path, srv)))
        models = [r["body"]["model"] for r in srv.requests()]
        estimate = estimate_run(load_experiment(write(tmp_path, srv)))
        # Scored again from scratch: the attacker, the target and the judge are all answered by the cache.
        asked = len(srv.requests())
        shutil.rmtree(tmp_path / "results")
        (again,) = run_experiment(load_experiment(write(tmp_path, srv)))
        assert len(srv.requests()) == asked
        # Another respondent config is another run (its own folder): the respondent is in the run id.
        (other,) = run_experiment(load_experiment(write(tmp_path, srv, instruction="Be brief.")))
    assert models.count("attacker") == models.count("target") == models.count("judge") == 15
    recs = read_jsonl(tmp_path / "results" / "rt" / "zero_shot" / row.run_id / "samples.jsonl")
    numbers = [r["samples"][0]["text"].split()[-1] for r in recs]
    want = [float(rude(x)) for x in numbers]
    assert 0 < sum(want) < len(want)
    assert row.metric.value == pytest.approx(sum(want) / len(want)) and row.metric.n == 15
    for rec, number in zip(recs, numbers):  # both texts kept
        sample = rec["samples"][0]
        assert sample["text"] == f"attack {number}"
        assert sample["score_meta"]["response"] == f"{'rude' if rude(number) else 'polite'} {number}"
    # Costed: the target's and the judge's tokens, at the fake price, are the row's metric spend.
    assert row.stats.metric_cost_usd > 0 and row.stats.metric_prompt_tokens > 0
    assert row.stats.cost_usd == pytest.approx(sum(s["cost"] for r in recs for s in r["samples"])
                                               + row.stats.metric_cost_usd)
    spent = sum(rec["samples"][0]["score_meta"]["prompt_tokens"] for rec in recs)
    assert spent == row.stats.metric_prompt_tokens  # the target's and the judge's, on each score
    assert again.run_id == row.run_id and again.metric.value == row.metric.value
    assert again.stats.metric_cost_usd == pytest.approx(row.stats.metric_cost_usd)  # cached calls keep their price
    assert other.run_id != row.run_id and other.metric.value == row.metric.value
    # `ladder check` counts the respondent's calls beside the judge's.
    (stage,) = estimate["stages"]
    assert "respondent (target)" in stage["scorer"]["scorer"] and stage["scorer"]["calls"] == 30


def test_the_respondents_model_is_probed_before_anything_is_written(tmp_path):
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond) as srv:
        exp = write(tmp_path, srv)
        raw = yaml.safe_load(exp.read_text())
        raw["respondent"]["model"] = {"name": "target", "base_url": "http://127.0.0.1:9/v1"}
        exp.write_text(yaml.safe_dump(raw, sort_keys=False))
        with pytest.raises(Exception) as info:
            run_experiment(load_experiment(exp))
    assert "respondent.model" in str(info.value)
    assert not (tmp_path / "results").exists()  # probed before anything is written


def test_the_sample_browser_shows_the_attack_and_the_reply(tmp_path):
    from ladder.evidence import Evidence
    from ladder.report_samples import browser_data, samples_html
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond) as srv:
        run_experiment(load_experiment(write(tmp_path, srv)))
    folder = tmp_path / "results" / "rt"
    data = browser_data(Evidence.load(folder))
    S = data["strings"]
    assert data["sample_keys"][-1] == "response"
    for row in data["rows"]:
        (cell,) = row["cells"]
        attack = S[cell["n"][0][0]]  # the sample's text ("a" is the judge's extracted verdict)
        number = attack.split()[-1]
        assert attack == f"attack {number}"
        assert S[cell["r"]] == S[cell["n"][0][-1]] == f"{'rude' if rude(number) else 'polite'} {number}"
    assert "the respondent replied" in samples_html(Evidence.load(folder))


def shots_config(tmp_path, srv, min_score=1):
    path = write(tmp_path, srv)
    raw = yaml.safe_load(path.read_text())
    raw["stages"].append({"type": "few_shot", "k": 2, "shots_from": {"stage": "zero_shot", "min_score": min_score}})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_few_shot_draws_its_shots_from_the_earlier_stages_successes(tmp_path):
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond) as srv:
        rows = {r.stage: r for r in run_experiment(load_experiment(shots_config(tmp_path, srv)))}
        first = read_jsonl(tmp_path / "results" / "rt" / "few_shot" / rows["few_shot"].run_id / "samples.jsonl")
        shutil.rmtree(tmp_path / "results" / "rt" / "few_shot")
        again = {r.stage: r for r in run_experiment(load_experiment(shots_config(tmp_path, srv)))}
    base = tmp_path / "results" / "rt"
    zero = {r["id"]: r for r in read_jsonl(base / "zero_shot" / rows["zero_shot"].run_id / "samples.jsonl")}
    wins = {i: r["samples"][0]["text"] for i, r in zero.items() if r["score"] == 1}
    user = {r["prompt"][-1]["content"]: i for i, r in zero.items()}
    assert 2 < len(wins) < len(zero)
    drawn = []
    recs = read_jsonl(base / "few_shot" / rows["few_shot"].run_id / "samples.jsonl")
    for rec in recs:
        turns = rec["prompt"][:-1]  # no instruction in this task; the example last
        assert rec["shots"] == 2 and len(turns) == 4
        shots = [(user[turns[j]["content"]], turns[j + 1]["content"]) for j in (0, 2)]
        for shot_id, answer in shots:
            assert shot_id in wins and shot_id != rec["id"] and answer == wins[shot_id]
        drawn.append(tuple(s for s, _ in shots))
    assert len(set(drawn)) > 1  # drawn per example, not one fixed set
    # Seeded: the same shots again; and the earlier stage's run id is part of this one's.
    assert again["few_shot"].run_id == rows["few_shot"].run_id
    assert [r["prompt"] for r in recs] == [r["prompt"] for r in first]


def test_shots_from_with_no_successes_is_an_error_not_an_empty_prompt(tmp_path):
    from ladder.errors import LadderError
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond) as srv:
        with pytest.raises(LadderError, match="no output of stage 'zero_shot' scored at least 2"):
            run_experiment(load_experiment(shots_config(tmp_path, srv, min_score=2)))


def test_train_from_reads_the_export_else_the_successes(tmp_path):
    from ladder.config import FromStageOutputs
    from ladder.earlier import training_rows

    prompt = [{"role": "user", "content": "Review: fine"}]
    recs = [{"id": "a", "prompt": prompt, "samples": [{"text": "bad"}, {"text": "awful"}], "selected": 1,
             "score": 1.0, "error": False},
            {"id": "b", "prompt": prompt, "samples": [{"text": "good"}], "score": 0.0, "error": False}]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    spec = FromStageOutputs(stage="best_of_n", min_score=1)
    (row,) = training_rows(tmp_path, spec, "sft")
    assert row.completion == "awful" and row.prompt[0].content == "Review: fine"
    export = [{"prompt": prompt, "completion": [{"role": "assistant", "content": t}], "score": s}
              for t, s in (("terrible", 1.0), ("nice", 0.0))]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in export))
    (row,) = training_rows(tmp_path, spec, "sft")  # the export (train prompts) wins over the test outputs
    assert row.completion == "terrible"


def is_rude(example, completion):
    return float(completion.startswith("rude"))


def test_a_stage_of_its_own_respondent_and_metrics_columns_pay_for_each_reply_once(tmp_path):
    from ladder.testing.fake_api import FakeAPIServer

    rude_metric = {"type": "python", "function": "tests.metrics.test_redteam:is_rude"}
    with FakeAPIServer(responder=respond) as srv:
        path = write(tmp_path, srv, respondent=False, metric=rude_metric)
        raw = yaml.safe_load(path.read_text())
        raw["stages"].append({"type": "zero_shot", "name": "attacked", "respondent": {"model": {"name": "target"}}})
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        rows = {r.stage: r for r in run_experiment(load_experiment(path))}
        del raw["metric"]
        raw["metrics"] = {"rude": rude_metric, "rude_again": rude_metric}
        raw["results_dir"] = str(tmp_path / "results2")
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        twice = {r.stage: r for r in run_experiment(load_experiment(path))}
    # Only the stage with a respondent scores replies: the attacks themselves are never "rude".
    assert rows["zero_shot"].metric.value == 0 and rows["zero_shot"].stats.metric_cost_usd is None
    attacked = rows["attacked"]
    numbers = [r["samples"][0]["text"].split()[-1] for r in read_jsonl(
        tmp_path / "results" / "rt" / "attacked" / attacked.run_id / "samples.jsonl")]
    assert attacked.metric.value == pytest.approx(sum(rude(x) for x in numbers) / len(numbers))
    assert attacked.metric.value > 0
    # The second metric reads the same replies: the row pays for each of them once.
    assert attacked.stats.metric_cost_usd > 0
    assert twice["attacked"].stats.metric_cost_usd == pytest.approx(attacked.stats.metric_cost_usd)
    assert twice["attacked"].extra.metrics["rude_again"].value == attacked.metric.value


def test_a_success_is_the_sample_that_scored_not_the_first_one(tmp_path):
    # With n > 1 a record's score is the mean of its scored samples: its first sample may have failed
    # (no text, no score) or scored below the others. The shot / training text is the best-scored one.
    import json

    from ladder.earlier import successes
    from ladder.metrics.pairwise import reference_outputs

    rows = [{"id": "a", "target": None, "prompt": [], "score": 1.0, "error": False,
             "samples": [{"text": "", "finish_reason": "error"}, {"text": "gloomy", "score": 1.0}]},
            {"id": "b", "target": None, "prompt": [], "score": 0.5, "error": False,
             "samples": [{"text": "sunny", "score": 0.0}, {"text": "bleak", "score": 1.0}]},
            {"id": "c", "target": None, "prompt": [], "score": 0.0, "error": False,
             "samples": [{"text": "x", "score": 0.0}, {"text": "y", "score": 1.0}], "selected": 0}]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [s["output"] for s in successes(tmp_path, 0.5)] == ["gloomy", "bleak"]
    assert reference_outputs(tmp_path / "samples.jsonl") == {"a": "gloomy", "b": "bleak", "c": "x"}


def test_a_respondent_ask_that_failed_is_charged_when_its_retry_succeeds(tmp_path):
    # A failed reply is not cached, so the next scorer of the same completion (here: a `metrics:`
    # column after the metric) asks again and pays: that spend must reach the row, not be taken for
    # a repeat of an ask already charged.
    from types import SimpleNamespace

    from ladder.cache import Cache
    from ladder.metrics.redteam import Respondent
    from ladder.prepared import prepare
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=respond, faults={"500": 1.0}) as srv:
        exp = load_experiment(write(tmp_path, srv))
        plan = prepare(exp)
        ctx = SimpleNamespace(task=plan.task, examples=plan.examples, stage=exp.stages[0], experiment=exp,
                              pool=None, cache=Cache(tmp_path / "calls"))
        r = Respondent(exp.stage_respondent(exp.stages[0]), ctx, preflight=False)
        ex = plan.examples[0]
        (failed,) = r.reply([ex], ["attack 7"])
        srv.configure(faults={"500": 0.0})
        (ok,) = r.reply([ex], ["attack 7"])
    assert failed.error and not ok.error
    assert ok.spent["cost_usd"] > 0 and ok.spent["prompt_tokens"] > 0
