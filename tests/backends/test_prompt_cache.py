"""Prompt caching: cached input tokens read from the providers' usage fields and priced as cached,
against the fake server's prompt caches, with the real SDK clients over real HTTP."""

from __future__ import annotations

import pytest

from ladder.backends.anthropic import AnthropicBackend, AnthropicConfig
from ladder.backends.prices import Price
from ladder.backends.base import generate
from ladder.backends.openai import OpenAIBackend, OpenAIConfig
from ladder.cache import Cache
from ladder.config import GenerationConfig
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import FAST, KEY, KEY_ENV

GEN = GenerationConfig(max_tokens=4, temperature=0)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def shared_prefix_prompts(n: int, shots: int = 30, words: int = 50) -> list[list[Message]]:
    """Prompts like few_shot `shots: fixed` makes: instruction (5 tokens) + the same `shots`
    user/assistant pairs (`words` + 1 tokens each), the last answer marked as the cache breakpoint,
    then a 2-token question of their own."""
    prefix = [Message("system", "Answer with one word please.")]
    for s in range(shots):
        prefix += [Message("user", " ".join(f"w{s}x{i}" for i in range(words))), Message("assistant", "yes")]
    prefix[-1] = Message("assistant", "yes", cache=True)
    return [[*prefix, Message("user", f"question {i}")] for i in range(n)]


def test_cached_token_pricing_is_hand_computed():
    b = OpenAIBackend(OpenAIConfig(name="x", base_url="http://127.0.0.1:9/v1", api_key_env=None,
                                   price=Price(input=2.0, output=8.0, cached_input=0.5, cache_write=2.5)))
    # 3000 prompt tokens of which 2048 read from the cache and 512 written to it; 100 output.
    # (440 × 2 + 2048 × 0.5 + 512 × 2.5 + 100 × 8) / 1e6 = (880 + 1024 + 1280 + 800) / 1e6
    assert b.cost(3000, 100, cached=2048, written=512) == pytest.approx(3984e-6)
    assert b.cost(3000, 100) == pytest.approx((3000 * 2 + 800) / 1e6) == b.estimate_cost(3000, 100)
    plain = OpenAIBackend(OpenAIConfig(name="x", base_url="http://127.0.0.1:9/v1", api_key_env=None,
                                       price=Price(input=2.0, output=8.0)))
    assert plain.cost(3000, 100, cached=2048) == pytest.approx((3000 * 2 + 800) / 1e6)  # no cache price: full
    listed = OpenAIBackend(OpenAIConfig(name="gpt-4o-mini-2024-07-18", api_key_env=None))
    assert listed.price() == Price(input=0.15, output=0.60, cached_input=0.075)  # from prices.yaml


def test_anthropic_marks_the_shared_prefix_then_reads_it_at_a_tenth():
    prompts = shared_prefix_prompts(12)
    prefix_tokens = 5 + 30 * 51  # instruction + shots, up to and including the marked answer
    with FakeAPIServer() as srv:
        b = AnthropicBackend(AnthropicConfig(name="claude-3-5-haiku-latest", base_url=srv.base_url,
                                             api_key_env=KEY_ENV, concurrency=8, **FAST))
        out = generate(b, Cache(None), prompts, GEN)
        bodies = [r["body"] for r in srv.requests()]
        stats = srv.stats()
    marked = bodies[0]["messages"][-2]["content"]
    assert marked == [{"type": "text", "text": "yes", "cache_control": {"type": "ephemeral"}}]
    assert all(isinstance(m["content"], str) for m in bodies[0]["messages"][:-2] + bodies[0]["messages"][-1:])
    # One request first writes the prefix; the 11 others, sent after it, all read it.
    assert stats["cache_write_tokens"] == prefix_tokens and stats["cached_tokens"] == 11 * prefix_tokens
    samples = [s for row in out for s in row]
    assert all(s.prompt_tokens == prefix_tokens + 2 for s in samples)
    assert sorted(s.cached_tokens for s in samples) == [0] + [prefix_tokens] * 11
    # claude-3-5-haiku: input $0.80, cache write $1.00, cache read $0.08, output $4 per 1M tokens
    first, later = out[0][0], out[1][0]
    assert first.cost == pytest.approx((2 * 0.8 + prefix_tokens * 1.0 + first.completion_tokens * 4) / 1e6)
    assert later.cost == pytest.approx((2 * 0.8 + prefix_tokens * 0.08 + later.completion_tokens * 4) / 1e6)


def test_openai_reports_cached_tokens_in_128_token_blocks():
    prompts = shared_prefix_prompts(6)
    total = 5 + 30 * 51 + 2  # 1537 prompt tokens; cached: the longest seen 1024 + 128·j prefix
    with FakeAPIServer() as srv:
        b = OpenAIBackend(OpenAIConfig(name="gpt-4o-mini", base_url=srv.base_url, api_key_env=KEY_ENV,
                                       concurrency=4, **FAST))
        out = generate(b, Cache(None), prompts, GEN)
        body = srv.requests()[0]["body"]
    assert all(isinstance(m["content"], str) for m in body["messages"])  # no cache_control for OpenAI
    samples = [row[0] for row in out]
    assert [s.cached_tokens for s in samples] == [0] + [1536] * 5  # 1024 + 4 × 128: 1536 tokens are shared
    later = samples[1]
    assert later.prompt_tokens == total
    assert later.cost == pytest.approx(((total - 1536) * 0.15 + 1536 * 0.075 + later.completion_tokens * 0.6) / 1e6)


def test_prompts_without_a_shared_prefix_read_nothing():
    prompts = shared_prefix_prompts(5)
    distinct = [[Message(m.role, f"{i} {m.content}") for m in p] for i, p in enumerate(prompts)]
    with FakeAPIServer() as srv:
        b = AnthropicBackend(AnthropicConfig(name="claude-3-5-haiku-latest", base_url=srv.base_url,
                                             api_key_env=KEY_ENV, **FAST))
        out = generate(b, Cache(None), distinct, GEN)
        stats = srv.stats()
    assert all(row[0].cached_tokens == 0 for row in out) and stats["cached_tokens"] == 0
    assert stats["cache_write_tokens"] == 0  # no breakpoint, nothing written


def test_check_prices_fixed_shots_with_the_prompt_cache(tmp_path, capsys):
    """`ladder check` on few_shot `shots: fixed` against Anthropic: beside the list price, the cost
    when the first request writes the shared prefix and the others read it (hand-computed from
    the backend's own token counts), and the CLI says it is a floor. Per-example shots: no line."""
    import yaml

    from ladder.cli import app
    from ladder.config import load_experiment
    from ladder.runner import estimate_run
    from typer.testing import CliRunner

    train = [{"text": " ".join(f"word{i}x{j}" for j in range(60)), "label": "yes"} for i in range(200)]
    test = [{"text": f"question {i}", "label": "yes"} for i in range(20)]
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"text": "{r["text"]}", "label": "yes"}}\n' for r in rows))
    price = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}
    ests = {}
    for shots in ("fixed", "per_example"):
        config = {"name": "c", "results_dir": str(tmp_path / "results"),
                  "task": {"data": {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")},
                           "target": "label", "template": "{text}", "choices": ["yes", "no"]},
                  "model": {"backend": "anthropic", "name": "claude-x", "api_key_env": KEY_ENV,
                            "base_url": "http://127.0.0.1:9", "price": price},
                  "generation": {"max_tokens": 4},
                  "stages": [{"type": "few_shot", "k": 8, "shots": shots}]}
        path = tmp_path / f"{shots}.yaml"
        path.write_text(yaml.safe_dump(config))
        ests[shots] = (path, estimate_run(load_experiment(path))["stages"][0])
    path, est = ests["fixed"]
    assert "cost_usd_cached" not in ests["per_example"][1]

    from ladder.runner import prepare
    from ladder.stages.few_shot import FewShot

    exp = load_experiment(path)
    plan = prepare(exp)
    ctx = plan.context(plan.resolve(exp.stages[0], planning=True), cache=None)
    prompts = [p.messages for p in FewShot(exp.stages[0]).prompts(ctx)[0]]
    b = AnthropicBackend(AnthropicConfig(name="claude-x", api_key_env=KEY_ENV, base_url="http://127.0.0.1:9",
                                         price=Price(**price)))
    prefix = b.count_tokens(prompts[0][:-1])
    assert prefix >= 1024 and est["prefix_tokens"] == prefix
    tokens = [b.count_tokens(p) for p in prompts]
    by_hand = ((tokens[0] - prefix) * 3.0 + prefix * 3.75
               + sum((t - prefix) * 3.0 + prefix * 0.3 for t in tokens[1:]) + 20 * 4 * 15.0) / 1e6
    assert est["cost_usd_cached"] == pytest.approx(by_hand)
    assert est["cost_usd"] == pytest.approx((sum(tokens) * 3.0 + 20 * 4 * 15.0) / 1e6)
    assert est["cost_usd_cached"] < 0.2 * est["cost_usd"]

    out = CliRunner().invoke(app, ["check", str(path), "--offline"], env={"COLUMNS": "200"})  # port 9: no server
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"${est['cost_usd_cached']:.4f} instead of ${est['cost_usd']:.4f}" in text and "a floor" in text
