"""What `model.batch: true` saves, and whether a killed batch run resumes without paying twice.

    python scripts/bench_batch.py                    # 300 examples per provider
    python scripts/bench_batch.py --examples 100 --providers openai

What is measured, for each provider (openai: gpt-4o-mini, anthropic: claude-3-5-haiku, priced from
ladder/data/prices.yaml) against the fake API server (ladder/testing/fake_api.py, its own process):

1. Cost: the same zero_shot experiment run with the real CLI (`python -m ladder.cli run`) twice,
   without and with `batch: true`, each with its own results folder and a fresh model-call cache.
   The cost is the stage's `cost_usd` in summary.csv (the sum of the samples' costs, from the
   token usage the server reported); the ratio is batch ÷ standard. The two runs must give the
   same completion for every example (same_samples), or the ratio compares different work.
2. Resume after kill: the batch run again, on a fresh cache, with jobs that take 30 s on the
   server and `batch_max_requests` set so the requests go out as 3 jobs. Once the ledger under the
   cache folder records all 3 job ids the CLI process is SIGKILLed; the server is then told to
   finish jobs at once and the same command is run again. Reported: jobs the re-run created (0
   expected: it collects the 3 recorded ones), lines the server answered more than once
   (requests_after_success, 0 expected), and examples recorded (all expected).

The server is a loopback fake: it bills nothing, so the cost is ladder's own arithmetic over the
usage fields it reports; what it checks is that batch samples are priced at the batch rate and
that nothing is sent twice. Wall times here say nothing about a real provider's 24 h window.
The last line is `batch_cost_ratio=<batch ÷ standard, over all providers> same_samples=<yes|no>
resume_new_jobs=<n> resume_duplicates=<n> load=<1-min load average>`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench_api import server_stats, start_server  # noqa: E402
from scripts.bench_cache import WORDS, write_reviews  # noqa: E402

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku"}


def configure(url: str, **changes) -> None:
    req = urllib.request.Request(url + "/_config", data=json.dumps(changes).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def write_experiment(folder: Path, url: str, provider: str, examples: int, batch: bool, tag: str) -> Path:
    write_reviews(folder, examples)
    exp = {
        "name": tag,
        "results_dir": str(folder / "results"),
        "cache_dir": str(folder / f"cache-{tag}"),
        "task": {"data": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")},
                 "target": "label", "instruction": "Classify the sentiment: positive, negative or neutral.",
                 "template": "Review: {text}", "choices": sorted(WORDS)},
        "metric": "choice",
        "model": {"backend": provider, "name": MODELS[provider], "base_url": url, "api_key_env": "LADDER_BENCH_KEY",
                  "concurrency": 32, "batch": batch, "batch_poll_interval": 0.2,
                  "batch_max_requests": -(-examples // 3)},
        "generation": {"max_tokens": 8, "temperature": 0},
        "subsample": {"n": examples},
        "guards": {"max_n": max(1000, examples)},
        "stages": [{"type": "zero_shot"}],
    }
    path = folder / f"{tag}.yaml"
    path.write_text(json.dumps(exp, indent=1))  # JSON is YAML
    return path


def cli(exp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(exp)], env=env, cwd=exp.parent,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ladder run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def stage_cost(folder: Path, tag: str) -> float:
    with open(folder / "results" / tag / "summary.csv") as f:
        return float(next(csv.DictReader(f))["cost_usd"])


def completions(folder: Path, tag: str) -> dict[str, str]:
    (run,) = (folder / "results" / tag / "zero_shot").iterdir()
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: r["samples"][0]["text"] for r in rows if not r["error"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--providers", default="openai,anthropic")
    a = p.parse_args()

    os.environ["LADDER_BENCH_KEY"] = "bench-key"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    costs = {"standard": 0.0, "batch": 0.0}
    same, new_jobs, duplicates = True, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, url = start_server(folder, 0.0)
        try:
            for provider in a.providers.split(","):
                configure(url, batch_seconds=0.5)
                runs = {}
                for mode in ("standard", "batch"):
                    tag = f"{provider}-{mode}"
                    start = time.perf_counter()
                    cli(write_experiment(folder, url, provider, a.examples, mode == "batch", tag), env)
                    runs[mode] = (stage_cost(folder, tag), completions(folder, tag), time.perf_counter() - start)
                    costs[mode] += runs[mode][0]
                agree = runs["standard"][1] == runs["batch"][1] and len(runs["batch"][1]) == a.examples
                same &= agree
                print(f"{provider}: standard ${runs['standard'][0]:.6f} ({runs['standard'][2]:.1f} s), "
                      f"batch ${runs['batch'][0]:.6f} ({runs['batch'][2]:.1f} s): ratio "
                      f"{runs['batch'][0] / runs['standard'][0]:.3f}, same completions: {agree}")

                # Resume after SIGKILL while the 3 jobs run.
                tag = f"{provider}-resume"
                exp = write_experiment(folder, url, provider, a.examples, True, tag)
                configure(url, batch_seconds=30)
                server_stats(url, reset=True)
                proc = subprocess.Popen([sys.executable, "-m", "ladder.cli", "run", str(exp)], env=env,
                                        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ledger = folder / f"cache-{tag}" / "batches"
                deadline = time.time() + 120
                while time.time() < deadline and proc.poll() is None:
                    if sum("job_id" in f.read_text() for f in ledger.glob("*.json")) == 3:
                        break
                    time.sleep(0.05)
                time.sleep(0.5)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                before = server_stats(url)
                configure(url, batch_seconds=0)
                start = time.perf_counter()
                cli(exp, env)
                after = server_stats(url)
                created = after["batch"]["jobs_created"][provider] - before["batch"]["jobs_created"][provider]
                new_jobs += created
                duplicates += after["requests_after_success"]
                recorded = len(completions(folder, tag))
                print(f"{provider} resume: jobs at kill {before['batch']['jobs_created'][provider]}, answered "
                      f"at kill {before['successes']}; re-run ({time.perf_counter() - start:.1f} s) created "
                      f"{created} new jobs, server answered {after['successes']} lines "
                      f"({after['requests_after_success']} more than once), {recorded}/{a.examples} examples recorded")
                same &= recorded == a.examples
        finally:
            server.terminate()
            server.wait()
    ratio = costs["batch"] / costs["standard"]
    print(f"batch_cost_ratio={ratio:.2f} same_samples={'yes' if same else 'no'} resume_new_jobs={new_jobs} "
          f"resume_duplicates={duplicates} load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
