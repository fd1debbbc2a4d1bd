"""Shared-prefix best-of-N on the hf backend against the plain path (target: ≥ 2× samples/s on CPU).

    python scripts/bench_bon_prefix.py                       # ladder-tiny and a ~28M-parameter random Llama
    python scripts/bench_bon_prefix.py --models tiny --repeats 5

Workload: best-of-N sampling as the best_of_n stage asks for it (`n` samples per prompt, default 16,
temperature 1, top_p 1, max_tokens 32) on long few-shot prompts: the sentiment task's instruction,
then labelled training reviews as user/assistant shot pairs until the rendered prompt reaches a
length drawn uniformly in [--min-tokens, --max-tokens-prompt] (default 1,000–2,000 tokens, as
`k: max` does for a small context), then the test review.

Both sides are ladder's `generate()` (ladder/backends/base.py) with the hf backend and a fresh
on-disk cache, so every sample is generated: the same prompts, the same loaded weights (one model
object, shared), the same batch size (rows per generate() call), the same seed.

- new: `shared_prefix: true` (the default): each prompt is prefilled once and its KV cache
  repeated to its n samples.
- old: `shared_prefix: false`: `generate(num_return_sequences=n)`, which prefills every sample's
  copy of the prompt.

The models: `tiny` is the shipped ladder-tiny (2M weights, trained on 512-token contexts, so on
these prompts it writes nonsense; its answers still end after a few tokens), `random` a Llama of
~28M random weights with ladder-tiny's tokenizer and a 4,096-position window (built in a temporary
folder; it never stops before max_tokens, so decoding is all max_tokens steps). Pairs alternate
new/old then old/new, `--repeats` times, after one untimed warm-up of each; the load average is
read after every pair (the machine is shared). The speed-up is the median over pairs of
new ÷ old samples/s (each pair back to back, under about the same load). Whether both sides gave
the same samples is printed (they should, up to float rounding). The last line is
`prefix_speedup=<x>`: the smallest median speed-up over the models measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ladder.backends.base import CallStats, generate  # noqa: E402
from ladder.backends.hf import BUILTIN_MODELS, HFBackend, HFConfig  # noqa: E402
from ladder.cache import Cache  # noqa: E402
from ladder.config import GenerationConfig  # noqa: E402
from ladder.types import Message  # noqa: E402

INSTRUCTION = "Classify the sentiment of the review. Answer with exactly one word: positive, negative or neutral."


def build_random_model(folder: Path) -> Path:
    """scripts/bench_hf.py's ~28M-parameter random Llama, with room for 2k-token prompts."""
    from bench_hf import build_random_model as build  # scripts/ is on sys.path when run as a script

    return build(folder, context=4096)


def few_shot_prompts(backend: HFBackend, count: int, lo: int, hi: int, seed: int = 0) -> list[list[Message]]:
    """`count` few-shot prompts of lo..hi tokens (as rendered for this backend)."""
    read = lambda split: [json.loads(line) for line in (REPO / "data" / "sentiment" / f"{split}.jsonl")  # noqa: E731
                          .read_text().splitlines()]
    train, test = read("train"), read("test")
    rng = random.Random(seed)
    prompts = []
    for i in range(count):
        target = rng.randint(lo, hi)
        shots = rng.sample(train, len(train))
        messages = [Message("system", INSTRUCTION)]
        query = Message("user", f"Review: {test[i % len(test)]['text']}")
        # Shots in pairs until the next pair would pass the target (≈ 20 tokens a pair: add
        # several at a time, then count exactly).
        while True:
            more = []
            for row in shots[:4]:
                more += [Message("user", f"Review: {row['text']}"), Message("assistant", row["label"])]
            if backend.count_tokens(messages + more + [query]) > target:
                break
            messages += more
            shots = shots[4:]
        prompts.append(messages + [query])
    return prompts


def run(backend: HFBackend, prompts: list[list[Message]], gen: GenerationConfig, folder: Path):
    cache = Cache(folder)  # fresh: every sample is generated
    start = time.perf_counter()
    out = generate(backend, cache, prompts, gen, CallStats())
    wall = time.perf_counter() - start
    cache.close()
    return wall, [s for row in out for s in row]


def measure(name: str, path: str, a: argparse.Namespace, tmp: Path) -> float:
    new = HFBackend(HFConfig(name=path, batch_size=a.batch_size, device="cpu", shared_prefix=True))
    old = HFBackend(HFConfig(name=path, batch_size=a.batch_size, device="cpu", shared_prefix=False))
    old._model, old._tokenizer = new.model, new.tokenizer  # one set of weights for both
    params = sum(p.numel() for p in new.model.parameters())
    count = a.prompts if name == "tiny" else a.random_prompts
    prompts = few_shot_prompts(new, count, a.min_tokens, a.max_tokens_prompt)
    lengths = [new.count_tokens(p) for p in prompts]
    gen = GenerationConfig(n=a.n, temperature=1.0, top_p=1.0, max_tokens=a.max_tokens, seed=1)
    # Untimed warm-up of both on one prompt: first-call costs are no one's throughput.
    run(new, prompts[:1], gen.model_copy(update={"n": 2, "max_tokens": 2}), tmp / f"{name}-warm-new")
    run(old, prompts[:1], gen.model_copy(update={"n": 2, "max_tokens": 2}), tmp / f"{name}-warm-old")
    samples = len(prompts) * gen.n
    print(f"{name} ({params / 1e6:.1f}M params): {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.0f}) × {gen.n} samples, batch {a.batch_size} rows, "
          f"max_tokens {gen.max_tokens}, temperature 1", flush=True)
    ratios, walls, differ = [], {"new": [], "old": []}, []
    for rep in range(a.repeats):
        got = {}
        for who in (["new", "old"] if rep % 2 == 0 else ["old", "new"]):
            wall, out = run(new if who == "new" else old, prompts, gen, tmp / f"{name}-{who}-{rep}")
            got[who] = out
            walls[who].append(wall)
        ratio = walls["old"][-1] / walls["new"][-1]  # same samples on both sides: samples/s ratio
        ratios.append(ratio)
        differ.append(sum(x.text != y.text for x, y in zip(got["new"], got["old"])))
        tokens = sum(s.completion_tokens for s in got["new"])
        print(f"  pair {rep + 1}: new {samples / walls['new'][-1]:6.2f} samples/s ({walls['new'][-1]:6.1f}s)  "
              f"old {samples / walls['old'][-1]:6.2f} samples/s ({walls['old'][-1]:6.1f}s)  speedup {ratio:5.2f}  "
              f"new tokens {tokens}  samples differing {differ[-1]}/{samples}  "
              f"load_avg_1min={os.getloadavg()[0]:.2f}", flush=True)
    speedup = statistics.median(ratios)
    best = {who: samples / min(w) for who, w in walls.items()}
    print(f"  {name}: speedup {speedup:.2f}× (median of {a.repeats} pairs; range {min(ratios):.2f}-{max(ratios):.2f}; "
          f"best runs {best['new']:.2f} vs {best['old']:.2f} samples/s = {best['new'] / best['old']:.2f}×); "
          f"samples differing new vs old: {max(differ)}/{samples} at most", flush=True)
    return speedup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=["tiny", "random"], default=["tiny", "random"])
    p.add_argument("--prompts", type=int, default=8, help="prompts per run with ladder-tiny")
    p.add_argument("--random-prompts", type=int, default=2, help="prompts per run with the random model")
    p.add_argument("--n", type=int, default=16, help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=32, help="rows per generate() call (ladder's default)")
    p.add_argument("--max-tokens", type=int, default=32, help="max new tokens per sample")
    p.add_argument("--min-tokens", type=int, default=1000, help="shortest prompt, in tokens")
    p.add_argument("--max-tokens-prompt", type=int, default=2000, help="longest prompt, in tokens")
    p.add_argument("--repeats", type=int, default=3, help="back-to-back new/old pairs per model")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    speedups = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models:
            path = str(BUILTIN_MODELS["ladder-tiny"]) if name == "tiny" else str(build_random_model(tmp / "random"))
            speedups.append((name, measure(name, path, a, tmp)))
    print(f"torch threads={torch.get_num_threads()} cores={os.cpu_count()} "
          f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("shared-prefix ÷ plain samples/s: " + " ".join(f"{k}={v:.2f}" for k, v in speedups) + " (last line: the min)")
    print(f"prefix_speedup={min(v for _, v in speedups):.2f}")


if __name__ == "__main__":
    main()
