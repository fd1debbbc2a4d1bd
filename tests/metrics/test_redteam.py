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
from tests.backends.api_support import FAST, KEY, KEY_ENV


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


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def test_the_metric_scores_the_respondents_reply_cached_and_costed(tmp_path, key):
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


def test_the_respondents_model_is_probed_before_anything_is_written(tmp_path, key):
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
