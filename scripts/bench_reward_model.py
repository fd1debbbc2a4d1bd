"""Train a preference model on Anthropic hh-rlhf (harmless-base) pairs with the reward_model stage,
as a user runs it (`ladder run` on a generated experiment), and print its held-out pairwise
accuracy with the 95% CI.

The data is ../shared/data/hh-rlhf-harmless/test.jsonl.gz (2,312 pairs: the only split shipped
here), split by the stage into training pairs and held-out pairs (seeded). The default backbone is
ladder-tiny (2M weights, trained on toy text, 512-token context): the only model available offline,
so expect a number only a little above chance (hh-rlhf pairs are hard to rank even for large PMs;
not measured here). Pass --backbone with a real model where you have one.

    python scripts/bench_reward_model.py [--data PATH] [--backbone NAME] [--max-train N] [--epochs E]

Last line: pairwise_accuracy=<x> ci_low=<lo> ci_high=<hi> n=<held-out pairs>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "test.jsonl.gz"))
    ap.add_argument("--backbone", default="ladder-tiny")
    ap.add_argument("--max-train", type=int, default=None, help="cap on training pairs (default: all)")
    ap.add_argument("--max-test", type=int, default=500, help="held-out pairs scored")
    ap.add_argument("--test-size", type=float, default=0.25)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--method", default="full", choices=["full", "lora"])
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--out", default=None, help="results folder (default: a temp dir)")
    a = ap.parse_args()
    if not Path(a.data).exists():
        sys.exit(f"no data at {a.data}: pass --data with an hh-rlhf style JSONL(.gz) of chosen/rejected pairs")

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench_rm_"))
    stage = {"type": "reward_model", "data": a.data, "test_size": a.test_size, "max_test": a.max_test,
             "epochs": a.epochs, "learning_rate": a.lr, "method": a.method, "max_length": a.max_length}
    stage["train_subsample"] = a.max_train or "all"  # the stage's default is 4,000 pairs; the bench's is all
    # An experiment needs a task; the project's own sentiment data stands in (nothing is asked of it).
    exp = {"name": "bench_reward_model", "results_dir": str(out / "results"), "cache_dir": str(out / "cache"),
           "task": {"data": {"train": str(ROOT / "data/sentiment/train.jsonl"),
                             "test": str(ROOT / "data/sentiment/test.jsonl")},
                    "target": "label", "template": "Review: {text}", "choices": ["positive", "negative", "neutral"]},
           "model": {"backend": "hf", "name": a.backbone}, "stages": [stage]}
    path = out / "exp.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(exp, sort_keys=False), encoding="utf-8")

    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], cwd=ROOT, env=env).returncode
    wall = time.perf_counter() - started
    if code != 0:
        sys.exit(f"ladder run failed with exit code {code}")
    metrics = json.loads(next((out / "results" / "bench_reward_model" / "reward_model").glob("*/metrics.json")).read_text())
    m, t, s = metrics["metric"], metrics["extra"]["training"], metrics["stats"]
    print(f"data={a.data} backbone={a.backbone} method={a.method} epochs={a.epochs} lr={a.lr:g}")
    print(f"train_pairs={s['train_pairs']} test_pairs={s['test_pairs']} steps={t['steps']} train_s={t['seconds']} "
          f"wall_s={wall:.1f} load_avg_1min={os.getloadavg()[0]:.2f} cores={os.cpu_count()}")
    for g in metrics["guards"]:
        if g["name"] in ("beats_chance", "max_length"):
            print(f"{g['level']} {g['name']}: {g['message']}")
    print(f"pairwise_accuracy={m['value']:.3f} ci_low={m['ci_low']:.3f} ci_high={m['ci_high']:.3f} n={m['n']}")


if __name__ == "__main__":
    main()
