"""What prompt caching saves on `k: max` few-shot: shots per example vs `shots: fixed`.

    python scripts/bench_prompt_cache.py                 # 200 test examples, 8,192-token window
    python scripts/bench_prompt_cache.py --examples 300 --context 16384

What is measured: the quickstart's sentiment data (data/sentiment) with few_shot `k: max`, run
twice through ladder — `shots: per_example` (the default: fresh shots for every example, so no two
prompts share a prefix) and `shots: fixed` (one seeded set before every example) — for an OpenAI
model (gpt-4o-mini: cached input at 50%, cached by the provider itself for prefixes of 1024+
tokens) and an Anthropic one (claude-sonnet-4-5: cache reads at 10%, writes at 125%, up to the
`cache_control` breakpoint ladder puts on the last shot). The models are served by the loopback
fake server (ladder/testing/fake_api.py), whose prompt caches report cached tokens in the usage
fields as the providers do; costs are ladder's own (`cost_usd` in metrics.json, from
ladder/data/prices.yaml). Both variants pack the same context window, so their prompts are about
equally long; what differs is how much of each is billed as cached.

The last line is `cached_cost_ratio=<OpenAI: cost fixed / cost per example>
anthropic_cached_cost_ratio=<the same for Anthropic>`. Cost, not time: nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}


def experiment(folder: Path, backend: str, url: str, examples: int, context: int) -> Path:
    data = REPO / "data" / "sentiment"
    exp = {
        "name": f"bench_prompt_cache_{backend}",
        "results_dir": str(folder / "results"),
        "cache_dir": str(folder / "cache"),
        "task": {"data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
                 "target": "label",
                 "instruction": "Classify the sentiment of the review. Answer with exactly one word: "
                                "positive, negative or neutral.",
                 "template": "Review: {text}", "choices": ["positive", "negative", "neutral"]},
        "metric": "choice",
        "model": {"backend": backend, "name": MODELS[backend], "base_url": url + ("/v1" if backend == "openai" else ""),
                  "api_key_env": "LADDER_BENCH_KEY", "concurrency": 32, "context_window": context},
        "generation": {"max_tokens": 8, "temperature": 0},
        "subsample": {"n": examples},
        "stages": [{"type": "few_shot", "name": "per_example", "k": "max"},
                   {"type": "few_shot", "name": "fixed", "k": "max", "shots": "fixed"}],
    }
    path = folder / f"{backend}.yaml"
    path.write_text(json.dumps(exp, indent=1))  # JSON is YAML
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--context", type=int, default=8192, help="context window the shots are packed into")
    a = p.parse_args()
    os.environ["LADDER_BENCH_KEY"] = "sk-bench-not-a-real-key"

    from ladder.config import load_experiment
    from ladder.runner import run_experiment
    from ladder.testing.fake_api import FakeAPIServer

    ratios = {}
    with tempfile.TemporaryDirectory() as tmp, FakeAPIServer() as srv:
        for backend in MODELS:
            srv.reset()  # fresh counters and empty prompt caches for each provider
            results = {r.stage: r.stats for r in run_experiment(
                load_experiment(experiment(Path(tmp), backend, srv.base_url, a.examples, a.context)))}
            for stage, s in results.items():
                print(f"{backend:9} {MODELS[backend]:17} shots {stage:11}: {s['examples']} examples, "
                      f"{s['prompt_tokens']:,} prompt tokens ({s['mean_prompt_tokens']:.0f} a prompt), "
                      f"{s.get('cached_tokens', 0):,} read from the prompt cache, cost ${s['cost_usd']:.4f}")
            ratios[backend] = results["fixed"]["cost_usd"] / results["per_example"]["cost_usd"]
            server = srv.stats()
            print(f"{backend:9} server: {server['cached_tokens']:,} cached tokens reported, "
                  f"{server['cache_write_tokens']:,} written; fixed / per-example cost = {ratios[backend]:.3f}")
    print(f"cached_cost_ratio={ratios['openai']:.2f} anthropic_cached_cost_ratio={ratios['anthropic']:.2f}")


if __name__ == "__main__":
    main()
