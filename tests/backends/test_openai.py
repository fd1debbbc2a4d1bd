"""The openai backend against the fake server, with the real SDK client over real HTTP."""

from __future__ import annotations

import asyncio
import csv
import gc
import subprocess
import sys

import pytest
from pydantic import ValidationError

from ladder.backends.base import CallStats, generate
from ladder.backends.openai import OpenAIBackend, OpenAIConfig
from ladder.cache import Cache
from ladder.config import GenerationConfig, load_experiment
from ladder.errors import BackendError
from ladder.runner import estimate_run, run_experiment
from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import ENV, FAST, KEY, KEY_ENV, api_experiment, sentiment
from tests.conftest import REPO

PROMPTS = [[Message("system", "Answer briefly."), Message("user", f"question {i}")] for i in range(5)]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def backend(srv: FakeAPIServer, **kw) -> OpenAIBackend:
    return OpenAIBackend(OpenAIConfig(name="gpt-4o-mini", base_url=srv.base_url, api_key_env=KEY_ENV,
                                      **{**FAST, **kw}))


def recording(responder=None):
    """A responder that also keeps every request it answered."""
    seen = []

    def respond(req, i):
        if i == 0:
            seen.append(req)
        return (responder or (lambda r, k: f"sample {k} of seed {r.seed}"))(req, i)

    return respond, seen


def test_experiment_end_to_end_with_tokens_and_cost(tmp_path):
    with FakeAPIServer(responder=sentiment) as srv:
        exp = load_experiment(api_experiment(tmp_path, "openai", srv.base_url))
        (result,) = run_experiment(exp)
        assert srv.stats()["successes"] == 40
        again = run_experiment(load_experiment(api_experiment(tmp_path, "openai", srv.base_url)))
        assert srv.stats()["requests"] == 40  # a finished stage sends nothing
    assert 0.6 < result.metric.value < 1.0 and result.metric.n == 40  # 'ordinary' meals are missed
    assert again[0].metric == result.metric
    records = read_jsonl(tmp_path / "results/t/zero_shot" / result.run_id / "samples.jsonl")
    samples = [s for r in records for s in r["samples"]]
    assert {s["finish_reason"] for s in samples} == {"eos"}  # no custom stops: the model ended its turn
    s = result.stats
    assert s.prompt_tokens == sum(x["prompt_tokens"] for x in samples) > 0
    assert s.completion_tokens == 40  # one whitespace token per answer on the fake server
    # gpt-4o-mini: $0.15 / $0.60 per 1M tokens (ladder/data/prices.yaml)
    assert s.cost_usd == pytest.approx((s.prompt_tokens * 0.15 + s.completion_tokens * 0.60) / 1e6)
    with open(tmp_path / "results/t/summary.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["cost_usd"]) > 0 and row["errors"] == "0" and row["n"] == "40"


def test_request_body_and_finish_reasons():
    respond, seen = recording(lambda r, i: "alpha beta STOP gamma")
    with FakeAPIServer(responder=respond) as srv:
        b = backend(srv)
        cache = Cache(None)
        gen = GenerationConfig(n=2, temperature=0.7, top_p=0.9, max_tokens=3, stop=["STOP"], seed=5)
        out = generate(b, cache, PROMPTS[:1], gen)
        req = seen[0]
        assert (req.n, req.temperature, req.top_p, req.max_tokens, req.stop, req.seed) == (2, 0.7, 0.9, 3, ["STOP"], 5)
        assert req.messages[0] == {"role": "system", "content": "Answer briefly."}
        assert [s.finish_reason for s in out[0]] == ["stop", "stop"] and out[0][0].text == "alpha beta "
        out = generate(b, cache, PROMPTS[:1], gen.model_copy(update={"stop": [], "max_tokens": 2}))
        assert [(s.text, s.finish_reason) for s in out[0]] == [("alpha beta", "length")] * 2
        out = generate(b, cache, PROMPTS[:1], gen.model_copy(update={"stop": [], "max_tokens": 9}))
        assert out[0][0].finish_reason == "eos"


def test_n16_after_n8_requests_only_the_new_samples():
    respond, seen = recording()
    with FakeAPIServer(responder=respond) as srv:
        b, cache = backend(srv), Cache(None)
        gen = GenerationConfig(n=8, temperature=1.0, seed=3)
        first = generate(b, cache, PROMPTS, gen)
        assert srv.stats()["requests"] == 5 and [r.n for r in seen] == [8] * 5
        stats = CallStats()
        second = generate(b, cache, PROMPTS, gen.model_copy(update={"n": 16}), stats)
        assert srv.stats()["requests"] == 10 and [r.n for r in seen[5:]] == [8] * 5
    assert (stats.cached, stats.generated) == (40, 40)
    assert [s.text for s in second[0][:8]] == [s.text for s in first[0]]
    # Samples 8-15 come from a request seeded differently, so they do not replay samples 0-7.
    assert len({s.text for s in second[0]}) == 16


def test_usage_split_across_n_and_logprobs():
    with FakeAPIServer(responder=lambda r, i: " ".join(["word"] * (i + 2))) as srv:
        out = generate(backend(srv, logprobs=True), Cache(None), PROMPTS[:1], GenerationConfig(n=3, max_tokens=50))
    samples = out[0]
    assert [s.completion_tokens for s in samples] == [2, 3, 4]  # each choice's own tokens
    # The prompt (4 whitespace tokens) is billed once for the 3 choices: shares add up to it.
    assert sum(s.prompt_tokens for s in samples) == 4 and max(s.prompt_tokens for s in samples) == 2
    assert all(s.logprob is not None and s.logprob < 0 for s in samples)
    b = OpenAIBackend(OpenAIConfig(name="gpt-4o-mini"))
    assert sum(s.cost for s in samples) == pytest.approx(b.estimate_cost(4, 9))
    assert b.prompt_copies(3) == 1 and b.prompt_copies(300) == 3  # n is capped at 128 a request


def test_prices_table_snapshots_and_overrides():
    cost = OpenAIBackend(OpenAIConfig(name="gpt-4o-mini-2024-07-18")).estimate_cost(1_000_000, 1_000_000)
    assert cost == pytest.approx(0.75)
    assert OpenAIBackend(OpenAIConfig(name="gpt-4o")).context_window == 128000
    assert OpenAIBackend(OpenAIConfig(name="gpt-4o-mystery")).estimate_cost(10**6, 10**6) == 0.0
    own = OpenAIBackend(OpenAIConfig(name="Qwen/Qwen2.5-7B", price={"input": 1, "output": 2}, context_window=4096))
    assert own.estimate_cost(10**6, 10**6) == 3.0 and own.context_window == 4096


def test_check_prices_the_plan_with_prompts_paid_once_per_request(tmp_path):
    def plan(n):
        path = api_experiment(tmp_path, "openai", "http://127.0.0.1:9", generation={"n": n, "max_tokens": 10})
        return estimate_run(load_experiment(path))["stages"][0]

    one, four = plan(1), plan(4)
    assert four["prompt_tokens"] == one["prompt_tokens"] > 0  # n=4 from one request: the prompt is paid once
    assert four["max_output_tokens"] == 40 * 4 * 10
    b = OpenAIBackend(OpenAIConfig(name="gpt-4o-mini"))
    assert four["cost_usd"] == pytest.approx(b.estimate_cost(four["prompt_tokens"], 1600)) and four["cost_usd"] > 0


def test_missing_key_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BackendError, match=KEY_ENV) as e:
        run_experiment(load_experiment(api_experiment(tmp_path, "openai", "http://127.0.0.1:9")))
    assert "export" in e.value.render()
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValidationError, match="looks like an API key") as e:  # refused by the config
        OpenAIConfig(name="m", api_key_env=KEY)
    assert KEY not in str(e.value)


def test_missing_route_or_model_stops_the_stage_with_one_clear_error():
    with FakeAPIServer() as srv:
        b = OpenAIBackend(OpenAIConfig(name="m", base_url=srv.base_url + "/wrong", api_key_env=KEY_ENV))
        with pytest.raises(BackendError, match="404") as e:
            generate(b, Cache(None), PROMPTS, GenerationConfig())
        assert "model.base_url" in e.value.render()


def test_rejected_requests_are_errors_without_retries_and_a_bad_config_gives_up():
    class BadN(OpenAIBackend):  # a request every server rejects (400), like an unsupported setting
        def body(self, messages, gen, indices):
            return {**super().body(messages, gen, indices), "n": 0}

    with FakeAPIServer() as srv:
        b = BadN(OpenAIConfig(name="m", base_url=srv.base_url, api_key_env=KEY_ENV, concurrency=1))
        out = generate(b, Cache(None), PROMPTS[:3], GenerationConfig())
        assert srv.stats()["requests"] == 3  # a 400 is not retried
        assert all(s.finish_reason == "error" and s.error.startswith("HTTP 400: n must be") for (s,) in out)
        many = [[Message("user", f"q{i}")] for i in range(30)]
        with pytest.raises(BackendError, match="rejected the first 10 requests"):
            generate(b, Cache(None), many, GenerationConfig())
        assert srv.stats()["requests"] == 13


def test_import_ladder_does_not_import_the_sdks():
    code = "import sys, ladder.backends.openai, ladder.backends.anthropic; print('openai' in sys.modules, 'anthropic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_openai_compatible_server_keyless(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    respond, seen = recording()
    with FakeAPIServer(responder=respond) as srv:
        b = OpenAIBackend(OpenAIConfig(name="local", base_url=srv.base_url + "/v1", api_key_env=None))
        b.preflight()
        generate(b, Cache(None), PROMPTS[:1], GenerationConfig(max_tokens=7))
    assert seen[0].max_tokens == 7 and b.fingerprint == f"local@{srv.base_url}/v1"
    with pytest.raises(ValidationError, match="api_key"):
        OpenAIConfig(name="m", api_key="sk-oops")  # keys never go in the YAML


def test_works_inside_a_running_event_loop():  # a notebook cell, or an async caller
    with FakeAPIServer(responder=lambda r, i: "fine") as srv:
        async def main():
            return generate(backend(srv), Cache(None), PROMPTS[:2], GenerationConfig())

        out = asyncio.run(main())
    assert [s.text for (s,) in out] == ["fine", "fine"]


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_example_configs_validate(name):
    exp = load_experiment(REPO / "configs" / f"quickstart_{name}.yaml")
    assert exp.model.backend == name and exp.model.api_key_env.endswith("_API_KEY")


def test_concurrency_is_the_number_in_flight():
    prompts = [[Message("user", f"q{i}")] for i in range(300)]
    # 0.5 s per request (timeout well above it): long enough that all 150 are in flight together
    # even on a loaded machine (at 0.1 s a busy CPU launched the last after the first returned).
    with FakeAPIServer(latency=0.5) as srv:
        generate(backend(srv, concurrency=150, timeout=10.0), Cache(None), prompts, GenerationConfig())
        stats = srv.stats()
    assert stats["max_in_flight"] == 150 and stats["successes"] == 300  # past the SDK's 100 kept-alive


def test_a_burst_of_responses_is_committed_together_before_it_is_reported(tmp_path):
    # 64 requests answered at once: their rows go to the cache in a few transactions, not 64, and
    # each prompt is reported done only once its sample is in the cache.
    class Counting(Cache):
        commits = 0

        def put_many(self, items):
            Counting.commits += bool(items)
            super().put_many(items)

    cache = Counting(tmp_path)
    prompts = [[Message("user", f"q{i}")] for i in range(64)]
    reported = []

    def on_prompt_done(p, samples):
        assert len(cache) > len(reported)  # this prompt's sample is committed already
        reported.append(p)

    with FakeAPIServer(latency=0.3, responder=lambda r, i: "ok") as srv:
        out = generate(backend(srv, concurrency=64), cache, prompts, GenerationConfig(),
                       on_prompt_done=on_prompt_done)
    assert sorted(reported) == list(range(64)) and len(cache) == 64 and [s.text for (s,) in out] == ["ok"] * 64
    assert Counting.commits < 32
    assert gc.get_freeze_count() == 0 and gc.isenabled()  # the run's gc.freeze() is undone
