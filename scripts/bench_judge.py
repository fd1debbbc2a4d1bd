"""A judge as the task metric goes through the same concurrent, cached path as generation.

    python scripts/bench_judge.py                     # 300 examples, 200 ms latency, concurrency 64
    python scripts/bench_judge.py --examples 600 --latency 0.1

What is measured: one zero_shot stage of an open-ended task (300 prompts-only examples) run by
`ladder.runner.run_experiment`, against the fake OpenAI server (ladder/testing/fake_api.py) in its
own process so its thread does not compete for the GIL:

1. generate: the stage with a python metric (no model calls to score): its wall time is generating
   the 300 completions at `concurrency`.
2. judge: the same stage with `metric: {type: judge, model: <the server>}`. Its generations come
   from the cache written in 1 (the requests are identical), so its wall time is judging the 300
   completions — through `score_batch`, one concurrent cached batch, at the same concurrency.

Both run in fresh results folders; the cache is fresh before 1 and kept for 2. A 2-example warm-up
(its own cache) runs first, so imports and the HTTP stack's first load are not timed. The server's request
counter is read after each run: 2 must have asked exactly one judge call per example and no
generation. The last line: `judge_over_generate=<judge wall / generate wall> load=<1-min load>`
(the goal: at most 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def server(latency: float, folder: Path) -> tuple[subprocess.Popen, str]:
    port_file = folder / "port"
    proc = subprocess.Popen([sys.executable, "-m", "ladder.testing.fake_api", "--port", "0", "--port-file",
                             str(port_file), "--latency", str(latency)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("the fake server did not start")
        time.sleep(0.02)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}"


def requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/_stats", timeout=5) as resp:
        return json.loads(resp.read())["requests"]


def run(folder: Path, name: str, metric: dict, model: dict, examples: int, cache: str = "cache") -> float:
    from ladder.config import load_experiment
    from ladder.runner import run_experiment

    config = {"name": name, "results_dir": str(folder / "results"), "cache_dir": str(folder / cache),
              "task": {"data": {"train": "prompts.jsonl", "test": "prompts.jsonl"}, "template": "{prompt}"},
              "subsample": {"n": examples}, "guards": {"min_n": 1, "max_n": 100_000},
              "model": model, "generation": {"max_tokens": 16}, "metric": metric,
              "stages": [{"type": "zero_shot"}]}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    (result,) = run_experiment(load_experiment(path))
    wall = time.perf_counter() - started
    assert result.metric.n == examples, result.metric
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("LADDER_BENCH_KEY", "x")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [{"prompt": f"Write a one-line note about topic {i}."} for i in range(args.examples)]
        (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "bench_metric.py").write_text("def length(example, completion):\n    return len(completion) > 0\n")
        sys.path.insert(0, str(folder))
        proc, base_url = server(args.latency, folder)
        try:
            model = {"backend": "openai", "name": "fake-model", "base_url": base_url, "api_key_env": "LADDER_BENCH_KEY",
                     "concurrency": args.concurrency}
            judge = {"type": "judge", "criteria": "Is the note polite?", "model": model}
            # Warm-up (its own cache): SDK imports and the HTTP stack's first load are not timed.
            run(folder, "warmup", judge, model, 2, cache="warmup-cache")
            before = requests(base_url)
            gen = run(folder, "generate", {"type": "python", "function": "bench_metric:length"}, model, args.examples)
            asked_gen = requests(base_url) - before
            before = requests(base_url)
            jud = run(folder, "judge", judge, model, args.examples)
            asked_judge = requests(base_url) - before
        finally:
            proc.terminate()
            proc.wait()
    ideal = args.examples * args.latency / args.concurrency
    print(f"generate: {gen:.2f} s for {asked_gen} requests; judge: {jud:.2f} s for {asked_judge} requests "
          f"(generations from the cache); ideal {ideal:.2f} s each at concurrency {args.concurrency}")
    assert asked_judge == args.examples, "the judge run should ask one judge call per example and nothing else"
    print(f"judge_over_generate={jud / gen:.3f} load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
