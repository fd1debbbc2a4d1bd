"""The hf backend: batched n>1 generation, finish reasons, stop strings, log-probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from ladder.backends.base import CallStats, generate, logprobs
from ladder.backends.hf import HFBackend, HFConfig, resolve_model_path
from ladder.cache import Cache
from ladder.config import GenerationConfig
from ladder.errors import BackendError
from ladder.types import Message

PROMPTS = [[Message("system", "Classify the sentiment of the review."), Message("user", f"Review: {t}")]
           for t in ("the food was great", "the soup was cold and the service was slow", "fine")]


@pytest.fixture
def backend(random_model):
    return HFBackend(HFConfig(name=str(random_model), batch_size=32))


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "c")


def count_generate_calls(backend, monkeypatch):
    calls = []
    original = backend.model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0] * kwargs.get("num_return_sequences", 1))
        return original(*args, **kwargs)

    monkeypatch.setattr(backend.model, "generate", counting)
    return calls


def test_n_samples_per_prompt_in_one_batched_call(backend, cache, monkeypatch):
    calls = count_generate_calls(backend, monkeypatch)
    gen = GenerationConfig(n=4, temperature=1.0, max_tokens=6, seed=1)
    out = generate(backend, cache, PROMPTS, gen)
    assert calls == [12]  # three prompts × four samples: one generate() call
    assert [len(row) for row in out] == [4, 4, 4]
    assert all(s.completion_tokens <= 6 and s.prompt_tokens > 0 for row in out for s in row)
    assert len({s.text for s in out[1]}) > 1  # temperature 1: the samples differ


def test_batches_respect_batch_size(random_model, cache, monkeypatch):
    backend = HFBackend(HFConfig(name=str(random_model), batch_size=4))
    calls = count_generate_calls(backend, monkeypatch)
    generate(backend, cache, PROMPTS * 3, GenerationConfig(n=2, temperature=1.0, max_tokens=3))
    assert calls == [4, 4, 4, 4, 2]  # 9 prompts × 2 samples, at most 4 rows per call


def test_cache_hits_and_topping_up_samples(backend, cache, monkeypatch):
    calls = count_generate_calls(backend, monkeypatch)
    gen8 = GenerationConfig(n=8, temperature=1.0, max_tokens=4)
    first = generate(backend, cache, PROMPTS, gen8)
    stats = CallStats()
    again = generate(backend, cache, PROMPTS, gen8, stats)
    assert again == first and stats.cached == 24 and stats.generated == 0 and calls == [24]
    stats = CallStats()
    more = generate(backend, cache, PROMPTS, gen8.model_copy(update={"n": 12}), stats)
    assert stats.cached == 24 and stats.generated == 12 and calls == [24, 12]
    assert [row[:8] for row in more] == first


def test_greedy_is_deterministic_and_batch_independent(random_model, tmp_path):
    gen = GenerationConfig(max_tokens=8)
    one = HFBackend(HFConfig(name=str(random_model), batch_size=1))
    many = HFBackend(HFConfig(name=str(random_model), batch_size=32))
    a = generate(one, Cache(tmp_path / "a"), PROMPTS, gen)
    b = generate(many, Cache(tmp_path / "b"), PROMPTS, gen)
    assert [r[0].text for r in a] == [r[0].text for r in b]


def test_stop_strings_truncate_and_report_stop(backend, cache):
    plain = generate(backend, cache, PROMPTS[:1], GenerationConfig(max_tokens=12))[0][0]
    assert plain.finish_reason == "length" and len(plain.text) > 4
    stop = plain.text[3:5]
    stopped = generate(backend, cache, PROMPTS[:1], GenerationConfig(max_tokens=12, stop=[stop]))[0][0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == plain.text[:plain.text.find(stop)]


def test_finish_reasons_from_tokens(backend):
    tok = backend.tokenizer
    eos = backend._eos_ids()
    ids = tok("hello there", add_special_tokens=False)["input_ids"]
    gen = GenerationConfig(max_tokens=10)
    s = backend._finish(ids + [tok.eos_token_id, tok.pad_token_id], gen, eos, 5)
    assert s.finish_reason == "eos" and s.text == "hello there" and s.completion_tokens == len(ids) + 1
    s = backend._finish(ids, gen, eos, 5)
    assert s.finish_reason == "length"
    s = backend._finish(ids + [tok.eos_token_id], GenerationConfig(stop=[" there"]), eos, 5)
    assert s.finish_reason == "stop" and s.text == "hello"


def test_chat_template_and_token_count(backend):
    text = backend.render(PROMPTS[0])
    assert text == ("<|system|>\nClassify the sentiment of the review.<|end|>\n"
                    "<|user|>\nReview: the food was great<|end|>\n<|assistant|>\n")
    assert backend.count_tokens(PROMPTS[0]) == len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert backend.context_window == 256


def test_plain_completion_without_chat_template(random_model):
    backend = HFBackend(HFConfig(name=str(random_model), chat_template="none"))
    shots = [Message("system", "Sort."), Message("user", "b a"), Message("assistant", "a b"), Message("user", "d c")]
    assert backend.render(shots) == "Sort.\n\nb a\na b\n\nd c\n"


def test_logprobs_match_a_manual_forward_pass(backend, cache):
    tok, model = backend.tokenizer, backend.model
    # Multi-token continuations, and one-token ones sharing a prompt (the shared-pass path).
    one = [t for t in ("a", "b", "c", "d", "e", "x") if len(tok(t, add_special_tokens=False)["input_ids"]) == 1]
    assert len(one) >= 2
    prompts = PROMPTS + [PROMPTS[0]] * len(one)
    conts = ["positive", "negative", "neutral and more words", *one]
    got = logprobs(backend, cache, prompts, conts)
    for messages, cont, value in zip(prompts, conts, got):
        p = tok(backend.render(messages), add_special_tokens=False)["input_ids"]
        c = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([p + c])).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        want = sum(lp[len(p) - 1 + i, t].item() for i, t in enumerate(c))
        assert math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-4)
    assert logprobs(backend, cache, prompts, conts) == got  # second time from the cache


def test_unknown_model_is_a_clear_error(tmp_path):
    backend = HFBackend(HFConfig(name=str(tmp_path / "nope")))
    with pytest.raises(BackendError, match="cannot load tokenizer"):
        backend.preflight()
    with pytest.raises(BackendError, match="cannot load tokenizer"):
        HFBackend(HFConfig(name="someone/not-a-model")).preflight()


def test_builtin_name_resolves_to_package_assets():
    assert resolve_model_path("ladder-tiny").endswith("assets/ladder-tiny")
    assert resolve_model_path("org/model") == "org/model"
