"""How long re-running a finished experiment takes, and how many requests it sends (target: < 2 s, 0).

    python scripts/bench_cache.py                    # 1,000 examples, zero_shot on the fake API server
    python scripts/bench_cache.py --examples 300 --repeats 5

What is measured:

1. A 1,000-example zero_shot stage (openai backend pointed at the fake API server of
   ladder/testing/fake_api.py, run as its own process, `--latency` per request) is run to
   completion with the real CLI, `python -m ladder.cli run exp.yaml`, in a subprocess. Its data
   (1,000 synthetic reviews), results folder and model-call cache are in a temporary folder.
2. The same command again, as a user would re-run it: the subprocess's wall time (Python start-up
   and imports included) and the requests the server received meanwhile (its counters are reset
   before, read after). The stage is found finished (metrics.json) and is not run again.
3. The same re-run in-process (`load_experiment` + `run_experiment`, imports already done), which
   is the harness's own share of (2).
4. A re-run after deleting the results folder, keeping the cache: every sample must come from
   the cache (0 requests); this is the path of a new experiment that asks what an old one asked.

Each re-run is repeated `--repeats` times; the medians are reported, with the load average (the
machine is shared). The last line is `rerun_s=<median CLI re-run wall time> requests=<requests the
server received during all CLI re-runs>`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench_api import server_stats, start_server  # noqa: E402

WORDS = {"positive": "great lovely superb friendly fresh".split(), "negative": "awful cold rude stale slow".split(),
         "neutral": "fine average ordinary okay plain".split()}
THINGS = "soup service room view price table dessert wine bread staff speaker blender".split()


def write_reviews(folder: Path, examples: int) -> None:
    """test.jsonl with `examples` seeded reviews and train.jsonl with the first 50 (bench_batch uses it too)."""
    rng = random.Random(0)
    rows = []
    for i in range(examples):
        label = rng.choice(sorted(WORDS))
        rows.append({"text": f"review {i}: the {rng.choice(THINGS)} was {rng.choice(WORDS[label])}", "label": label})
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:50]))


def write_experiment(folder: Path, url: str, examples: int) -> Path:
    write_reviews(folder, examples)
    exp = {
        "name": "bench_cache",
        "results_dir": str(folder / "results"),
        "cache_dir": str(folder / "cache"),
        "task": {"data": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")},
                 "target": "label", "instruction": "Classify the sentiment: positive, negative or neutral.",
                 "template": "Review: {text}", "choices": sorted(WORDS)},
        "metric": "choice",
        "model": {"backend": "openai", "name": "fake-model", "base_url": url + "/v1", "api_key_env": "LADDER_BENCH_KEY",
                  "concurrency": 64, "price": {"input": 0, "output": 0}},
        "generation": {"max_tokens": 8, "temperature": 0},
        "subsample": {"n": examples},
        "guards": {"max_n": max(1000, examples)},
        "stages": [{"type": "zero_shot"}],
    }
    path = folder / "exp.yaml"
    path.write_text(json.dumps(exp, indent=1))  # JSON is YAML
    return path


def cli_run(exp: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(exp)], env=env, cwd=exp.parent,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ladder run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout + done.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--latency", type=float, default=0.2, help="fake server latency of the first run's requests")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    os.environ["LADDER_BENCH_KEY"] = "bench-key"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, url = start_server(folder, a.latency)
        try:
            exp = write_experiment(folder, url, a.examples)
            first, _ = cli_run(exp, env)
            served = server_stats(url)
            print(f"first run (CLI): {first:.2f}s, server requests={served['requests']} "
                  f"answered={served['successes']}")

            cli, cli_requests = [], 0
            for _ in range(a.repeats):
                server_stats(url, reset=True)
                wall, out = cli_run(exp, env)
                cli.append(wall)
                cli_requests += server_stats(url)["requests"]
            print(f"re-run (CLI, `python -m ladder.cli run`): median {statistics.median(cli):.3f}s "
                  f"[{', '.join(f'{w:.3f}' for w in cli)}], server requests={cli_requests} "
                  f"load_avg_1min={os.getloadavg()[0]:.2f}")
            print("  its output:", " | ".join(line.strip() for line in out.splitlines() if "done earlier" in line))

            from ladder.config import load_experiment
            from ladder.progress import console
            from ladder.runner import run_experiment

            console.quiet = True
            inproc, inproc_requests = [], 0
            for _ in range(a.repeats):
                server_stats(url, reset=True)
                start = time.perf_counter()
                run_experiment(load_experiment(exp, []))
                inproc.append(time.perf_counter() - start)
                inproc_requests += server_stats(url)["requests"]
            print(f"re-run (in-process, load_experiment + run_experiment): median {statistics.median(inproc):.3f}s, "
                  f"server requests={inproc_requests}")

            from_cache, cache_requests = [], 0
            for _ in range(a.repeats):
                shutil.rmtree(folder / "results")
                server_stats(url, reset=True)
                wall, _ = cli_run(exp, env)
                from_cache.append(wall)
                cache_requests += server_stats(url)["requests"]
            print(f"re-run from the cache alone (results folder deleted, CLI): median "
                  f"{statistics.median(from_cache):.3f}s, server requests={cache_requests}")
        finally:
            server.terminate()
            server.wait(timeout=10)

    print(f"examples={a.examples} repeats={a.repeats} cores={os.cpu_count()} "
          f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"rerun_s={statistics.median(cli):.3f} requests={cli_requests}")


if __name__ == "__main__":
    main()
