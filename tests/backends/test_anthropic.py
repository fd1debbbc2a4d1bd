"""The anthropic backend against the fake server, with the real SDK client over real HTTP."""

from __future__ import annotations

import json

import pytest

from ladder.backends.anthropic import AnthropicBackend, AnthropicConfig
from ladder.backends.base import CallStats, generate
from ladder.cache import Cache
from ladder.config import GenerationConfig, load_experiment
from ladder.errors import BackendError
from ladder.runner import estimate_run, run_experiment
from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import FAST, KEY, KEY_ENV, api_experiment, sentiment

PROMPTS = [[Message("system", "Answer briefly."), Message("user", f"question {i}")] for i in range(5)]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def backend(srv: FakeAPIServer, **kw) -> AnthropicBackend:
    return AnthropicBackend(AnthropicConfig(name="claude-3-5-haiku-latest", base_url=srv.base_url,
                                            api_key_env=KEY_ENV, **{**FAST, **kw}))


def test_experiment_end_to_end_with_tokens_and_cost(tmp_path):
    seen = []

    def respond(req, i):
        seen.append(req)
        return sentiment(req, i)

    with FakeAPIServer(responder=respond) as srv:
        (result,) = run_experiment(load_experiment(api_experiment(tmp_path, "anthropic", srv.base_url)))
        stats = srv.stats()
    assert stats["successes"] == 40 and stats["by_provider"] == {"anthropic": 40}
    assert stats["auth"]["none"] == 0  # the key went with every request (as this SDK release sends it)
    assert seen[0].messages[0] == {"role": "system", "content": "Classify the sentiment of the review."}
    assert 0.6 < result.metric.value < 1.0 and result.metric.n == 40
    s = result.stats
    # claude-3-5-haiku: $0.80 / $4 per 1M tokens (ladder/data/prices.yaml)
    assert s.cost_usd == pytest.approx((s.prompt_tokens * 0.8 + s.completion_tokens * 4) / 1e6)
    assert s.completion_tokens == 40 and s.prompt_tokens > 40
    records = read_jsonl(tmp_path / "results/t/zero_shot" / result.run_id / "samples.jsonl")
    assert {smp["finish_reason"] for r in records for smp in r["samples"]} == {"eos"}  # end_turn


def test_finish_reasons_and_sampling_arguments():
    seen = []

    def respond(req, i):
        seen.append(req)
        return "alpha beta STOP gamma"

    with FakeAPIServer(responder=respond) as srv:
        b, cache = backend(srv), Cache(None)
        gen = GenerationConfig(temperature=0.3, max_tokens=9, stop=["STOP"])
        (s,), = generate(b, cache, PROMPTS[:1], gen)
        assert (s.text, s.finish_reason) == ("alpha beta ", "stop")
        assert (seen[0].temperature, seen[0].max_tokens, seen[0].stop) == (0.3, 9, ["STOP"])
        (s,), = generate(b, cache, PROMPTS[:1], gen.model_copy(update={"stop": [], "max_tokens": 2}))
        assert (s.text, s.finish_reason, s.completion_tokens) == ("alpha beta", "length", 2)
        (s,), = generate(b, cache, PROMPTS[:1], gen.model_copy(update={"stop": []}))
        assert s.finish_reason == "eos"
    with pytest.raises(BackendError, match="temperature from 0 to 1"):
        generate(b, cache, PROMPTS[:1], GenerationConfig(temperature=1.5))


# (temperature, top_p) → the one argument the request carries (None: refused before the run).
SAMPLING = [((0.0, 1.0), {"temperature": 0.0}),   # ladder's default: greedy
            ((0.0, 0.9), {"temperature": 0.0}),   # greedy decoding: top_p changes nothing (as on hf)
            ((0.7, 1.0), {"temperature": 0.7}),
            ((1.0, 0.9), {"top_p": 0.9}),          # temperature 1 is the API's default: top_p alone
            ((0.7, 0.9), None)]                    # both altered: no request can say it


@pytest.mark.parametrize(("setting", "sent"), SAMPLING)
def test_requests_carry_temperature_or_top_p_never_both(tmp_path, setting, sent):
    temperature, top_p = setting
    # The fake server answers a request with both the 400 of recent Claude models, and records bodies.
    with FakeAPIServer(responder=sentiment) as srv:
        path = api_experiment(tmp_path, "anthropic", srv.base_url,
                              generation={"max_tokens": 4, "temperature": temperature, "top_p": top_p})
        if sent is None:
            with pytest.raises(BackendError, match="temperature or top_p, not both") as e:
                run_experiment(load_experiment(path))
            assert "top_p: 1" in e.value.render() and "temperature: 1" in e.value.render()
            assert srv.requests() == [] and not (tmp_path / "results").exists()  # refused before the run
            return
        (result,) = run_experiment(load_experiment(path))
        bodies = [r["body"] for r in srv.requests()]
    assert len(bodies) == 40 and result.stats.errors == 0
    assert all({k: b[k] for k in ("temperature", "top_p") if k in b} == sent for b in bodies)
    metrics = (tmp_path / "results/t/zero_shot" / result.run_id / "metrics.json").read_text()
    assert json.loads(metrics)["stats"]["sampling_sent"] == sent  # what was applied is on record


def test_n16_after_n8_sends_eight_new_requests_per_prompt():
    with FakeAPIServer() as srv:
        b, cache = backend(srv), Cache(None)
        gen = GenerationConfig(n=8, temperature=1.0)
        generate(b, cache, PROMPTS, gen)
        assert srv.stats()["requests"] == 40  # no `n` in the messages API: one request per sample
        stats = CallStats()
        out = generate(b, cache, PROMPTS, gen.model_copy(update={"n": 16}), stats)
        assert srv.stats()["requests"] == 80
    assert (stats.cached, stats.generated) == (40, 40) and all(len(row) == 16 for row in out)


def test_samples_are_committed_one_by_one_and_errors_are_not_cached(capsys):
    # Without retries, a 500 on some attempts fails single samples of a prompt; the samples that
    # succeeded are cached at once, and a second call requests exactly the failed ones.
    with FakeAPIServer(faults={"500": 0.3}, seed=2) as srv:
        b, cache = backend(srv, max_retries=0), Cache(None)
        gen = GenerationConfig(n=4, temperature=1.0)
        done = []
        first = generate(b, cache, PROMPTS, gen, on_prompt_done=lambda p, samples: done.append(p))
        failed = sum(s.finish_reason == "error" for row in first for s in row)
        assert 0 < failed < 20 and len(cache) == 20 - failed
        assert sorted(done) == list(range(5))  # each prompt reported once, when complete
        assert all(s.error == "HTTP 500: The server had an error (injected)" for row in first for s in row
                   if s.finish_reason == "error")
        said = " ".join(capsys.readouterr().err.split())
        assert f"{failed} requests failed after all retries: HTTP 500: The server had an error (injected) (×{failed})" in said
        srv.configure(faults={"500": 0.0})
        srv.reset()
        second = generate(b, cache, PROMPTS, gen)
        assert srv.stats()["requests"] == failed
    assert all(s.finish_reason != "error" for row in second for s in row)


def test_check_counts_a_prompt_once_per_sample(tmp_path):
    def plan(n):
        path = api_experiment(tmp_path, "anthropic", "http://127.0.0.1:9", generation={"n": n, "max_tokens": 10})
        return estimate_run(load_experiment(path))["stages"][0]

    one, four = plan(1), plan(4)
    assert four["prompt_tokens"] == 4 * one["prompt_tokens"]  # one request per sample
    b = AnthropicBackend(AnthropicConfig(name="claude-3-5-haiku-20241022"))
    assert four["cost_usd"] == pytest.approx(b.estimate_cost(four["prompt_tokens"], 1600)) and four["cost_usd"] > 0
    assert b.context_window == 200000


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY is not set"):
        AnthropicBackend(AnthropicConfig(name="claude-3-5-haiku-latest")).preflight()
