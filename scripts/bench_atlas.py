"""How long `ladder atlas` takes for 1,000 and 10,000 samples (the target: 10k under 60 s on 2 cores).

Writes a synthetic experiment folder shaped like a real one (zero_shot and few_shot with one
sample per example, best_of_n with eight; reviews and completions drawn from a vocabulary), then
times the whole command path: read samples, TF-IDF + SVD, UMAP, figure, HTML. A first small run
pays numba's one-off JIT compilation and is reported apart. The last line is `atlas_10k_s=<x>`.

    python scripts/bench_atlas.py [--out /tmp/bench_atlas]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

from ladder.atlas import write
from ladder.store import JsonlWriter, write_json
from ladder.table import write_summary
from ladder.types import Guard, MetricValue, StageResult

LABELS = ["positive", "negative", "neutral"]
WORDS = {"positive": "great lovely superb friendly fresh".split(), "negative": "awful cold rude stale slow".split(),
         "neutral": "fine average ordinary okay plain".split()}
FILLER = "the meal soup service staff room view price table dessert wine bread was were and but quite very".split()


def synthesize(folder: Path, examples: int, seed: int = 0) -> int:
    """A results folder with zero_shot, few_shot and best_of_n (N=8): examples × 10 samples."""
    rng = random.Random(seed)
    rows = []
    for i in range(examples):
        label = rng.choice(LABELS)
        words = rng.sample(FILLER, 6) + [rng.choice(WORDS[label])]
        rng.shuffle(words)
        rows.append((f"ex{i}", label, "Review: " + " ".join(words)))
    results = []
    for stage, n in (("zero_shot", 1), ("few_shot", 1), ("best_of_n", 8)):
        run_dir = folder / stage / "bench"
        scores = []
        with JsonlWriter(run_dir / "samples.jsonl") as out:
            for ex_id, label, prompt in rows:
                samples = []
                for _ in range(n):
                    answer = label if rng.random() < 0.6 else rng.choice(LABELS)
                    text = answer if rng.random() < 0.8 else f"{answer} because it was {rng.choice(FILLER)}"
                    samples.append({"text": text, "finish_reason": "eos", "prompt_tokens": 20,
                                    "completion_tokens": 2, "score": float(answer == label)})
                score = max(s["score"] for s in samples)
                scores.append(score)
                out.write([{"id": ex_id, "target": label, "score": score, "error": False, "samples": samples,
                            "prompt": [{"role": "system", "content": "Classify."},
                                       {"role": "user", "content": prompt}]}])
        value = sum(scores) / len(scores)
        result = StageResult(stage, stage, "bench", "choice",
                             MetricValue(value, value - 0.02, value + 0.02, len(scores)),
                             [Guard("subsample", "ok", "bench")], {"examples": len(scores)})
        write_json(run_dir / "metrics.json", result.to_dict())
        results.append(result)
    write_summary(folder, results)
    return examples * 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_atlas"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    timings = {}
    for label, examples in (("jit_warmup", 20), ("1k", 100), ("10k", 1000)):
        folder = args.out / label
        samples = synthesize(folder, examples)
        started = time.perf_counter()
        page = write(folder, all_samples=True)  # every sample: the 10k the target is about
        timings[label] = time.perf_counter() - started
        print(f"{label}: {samples:,} samples in {timings[label]:.1f} s → {page} "
              f"({page.stat().st_size / 1e6:.1f} MB)", flush=True)
    print(f"atlas_1k_s={timings['1k']:.1f}")
    print(f"atlas_10k_s={timings['10k']:.1f}")


if __name__ == "__main__":
    main()
