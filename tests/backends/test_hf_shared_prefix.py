"""Shared-prefix best-of-N on the hf backend: each prompt is prefilled once and its KV cache
repeated to its n samples. It must give what generate(num_return_sequences=n) gives: the same
samples for the same seed, greedy unchanged, and the model's own next-token distribution."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from scipy.stats import chi2

from ladder.backends.base import generate
from ladder.backends.hf import HFBackend, HFConfig
from ladder.cache import Cache
from ladder.config import GenerationConfig
from ladder.types import Message

# Different lengths, so one batch is left-padded and positions must come from the mask.
PROMPTS = [[Message("system", "Classify the sentiment of the review."), Message("user", f"Review: {t}")]
           for t in ("the food was great", "the soup was cold and the service was slow", "fine")]


def backend_for(model, shared: bool, batch_size: int = 32) -> HFBackend:
    return HFBackend(HFConfig(name=str(model), batch_size=batch_size, shared_prefix=shared))


def spy_shared(backend, monkeypatch) -> list[int]:
    """Rows produced through the shared-prefix path, per call."""
    calls: list[int] = []
    original = backend._generate_shared_prefix

    def spying(enc, m, kwargs):
        out = original(enc, m, kwargs)
        calls.append(0 if out is None else out.shape[0])
        return out

    monkeypatch.setattr(backend, "_generate_shared_prefix", spying)
    return calls


@pytest.mark.parametrize("batch_size", [32, 4])
def test_sampling_gives_the_samples_of_the_plain_path(random_model, tmp_path, monkeypatch, batch_size):
    gen = GenerationConfig(n=4, temperature=1.0, max_tokens=8, seed=7)
    shared = backend_for(random_model, True, batch_size)
    calls = spy_shared(shared, monkeypatch)
    new = generate(shared, Cache(tmp_path / "a"), PROMPTS, gen)
    old = generate(backend_for(random_model, False, batch_size), Cache(tmp_path / "b"), PROMPTS, gen)
    assert sum(calls) == 12 and all(calls)  # every row came through the shared path
    # Same seed, same rows, same random draws: the same samples (float rounding aside, which does
    # not flip a draw here), with the same finish reasons and token counts.
    assert new == old
    assert len({s.text for row in new for s in row}) > 4  # they are samples, not one string copied


@pytest.mark.parametrize("model", ["ladder-tiny", "random"])
def test_per_step_logits_match_the_plain_path(random_model, model):
    """The strict check: every decoding step's logits, for every row of a left-padded batch, equal
    generate(num_return_sequences=n)'s. ladder-tiny is trained, so its logits depend on positions:
    a prefix cache built with the wrong positions or padding is off by ~1 here, not by rounding."""
    backend = HFBackend(HFConfig(name="ladder-tiny" if model == "ladder-tiny" else str(random_model)))
    enc = backend._encode([backend.render(p) for p in PROMPTS])
    assert (enc["attention_mask"] == 0).any()  # some rows are padded
    kwargs = dict(max_new_tokens=6, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                  pad_token_id=backend.tokenizer.pad_token_id, eos_token_id=sorted(backend._eos_ids()),
                  return_dict_in_generate=True, output_logits=True, num_return_sequences=4)
    with torch.inference_mode():
        torch.manual_seed(1)
        plain = backend.model.generate(**enc, **kwargs)
        torch.manual_seed(1)
        shared = backend._generate_shared_prefix(enc, 4, kwargs)
    assert torch.equal(plain.sequences, shared.sequences)
    assert len(plain.logits) == len(shared.logits)
    for a, b in zip(plain.logits, shared.logits):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_greedy_n1_is_unchanged_and_greedy_n_repeats_it(random_model, tmp_path, monkeypatch):
    shared = backend_for(random_model, True)
    calls = spy_shared(shared, monkeypatch)
    greedy = GenerationConfig(max_tokens=10)
    one = generate(shared, Cache(tmp_path / "a"), PROMPTS, greedy)
    plain = generate(backend_for(random_model, False), Cache(tmp_path / "b"), PROMPTS, greedy)
    assert one == plain and calls == []  # n=1 never takes the shared path: byte for byte the old one
    # Greedy with n=3 (which generate(num_return_sequences=3) refuses, so the plain path repeats
    # the rows): each sample is the n=1 answer, on both paths.
    three = generate(shared, Cache(tmp_path / "c"), PROMPTS, greedy.model_copy(update={"n": 3}))
    assert calls == [9]
    assert [[s.text for s in row] for row in three] == [[row[0].text] * 3 for row in one]
    assert all(s == row[0] for r3, row in zip(three, one) for s in r3)  # finish reasons, counts too
    three_plain = generate(backend_for(random_model, False), Cache(tmp_path / "d"), PROMPTS,
                           greedy.model_copy(update={"n": 3}))
    assert three_plain == three


def _chi_square_p(counts: Counter, probs: torch.Tensor, n: int) -> float:
    """Goodness of fit of token counts to `probs`, tokens with expected count < 5 pooled."""
    expected = probs * n
    big = [t for t in range(len(probs)) if expected[t] >= 5]
    obs = [counts.get(t, 0) for t in big]
    exp = [float(expected[t]) for t in big]
    rest_obs, rest_exp = n - sum(obs), n - sum(exp)
    if rest_exp >= 1:
        obs.append(rest_obs)
        exp.append(rest_exp)
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    return float(chi2.sf(stat, len(obs) - 1))


@pytest.mark.parametrize("shared", [True, False])
def test_sample_distribution_is_the_models(random_model, tmp_path, monkeypatch, shared):
    """The first two sampled tokens follow the model's softmax computed directly from one forward
    pass over prompt (+ first token). A cache built from the wrong tokens or positions (the last
    prompt token dropped or doubled, padding counted) samples from another distribution, which the
    same test rejects: its power is checked below against the distribution one position earlier.
    Run for the plain path too, to show the test itself is right."""
    temperature = 0.04  # the random model's logits are nearly flat: sharpen them so bugs show
    n = 800
    backend = backend_for(random_model, shared, batch_size=n)
    drawn: list[list[int]] = []  # the raw new tokens of each sample, before EOS cuts and decoding
    finish = backend._finish
    monkeypatch.setattr(backend, "_finish", lambda tokens, *a: drawn.append(tokens) or finish(tokens, *a))
    prompt = PROMPTS[1]
    generate(backend, Cache(tmp_path / "c"), [prompt],
             GenerationConfig(n=n, temperature=temperature, max_tokens=2, seed=3))
    tok, model = backend.tokenizer, backend.model
    ids = tok(backend.render(prompt), add_special_tokens=False)["input_ids"]
    eos = backend._eos_ids()
    assert len(drawn) == n
    firsts = [t[0] for t in drawn]
    seconds = [t[1] if t[0] not in eos else None for t in drawn]  # after EOS comes padding
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    right = torch.softmax(logits[-1] / temperature, -1)
    earlier = torch.softmax(logits[-2] / temperature, -1)  # as if the last prompt token were lost
    assert right.max() < 0.5  # a real distribution, not a point mass
    counts = Counter(firsts)
    assert _chi_square_p(counts, right, n) > 1e-3
    assert _chi_square_p(counts, earlier, n) < 1e-6  # the test can fail
    # Second token, given the most common first one (the decode step after the shared prefix).
    top, k = counts.most_common(1)[0]
    follow = Counter(b for a, b in zip(firsts, seconds) if a == top and b is not None)
    m = sum(follow.values())
    assert m >= 100
    with torch.no_grad():
        logits2 = model(torch.tensor([ids + [top]])).logits[0, -1].float()
    assert _chi_square_p(follow, torch.softmax(logits2 / temperature, -1), m) > 1e-3
