"""Throughput at a provider's rate limit: ladder's `concurrency: auto` (with header pacing) and
inspect_ai's adaptive connections against the same token-bucket limiter, in the same run.

    python scripts/bench_ratelimit.py                       # 3,000 requests × {1,200 rpm, 6,000 rpm, 84k tpm}
    python scripts/bench_ratelimit.py --requests 600 --limits 1200   # one quick limit
    python scripts/bench_ratelimit.py --mode free           # rejected requests cost nothing
    python scripts/bench_ratelimit.py --variants            # 4 API variants at once vs one by one, 1,200/min

What is measured:

- The fake server (ladder/testing/fake_api.py) runs as its own process with its limiter
  (ladder/testing/limiter.py): buckets of requests/min and tokens/min holding 1 s of either,
  answering 429 with OpenAI's x-ratelimit-* headers and Retry-After, each answered request after
  `--latency`. `--mode spend` (the default, OpenAI's documented behaviour): a rejected request
  still spends the request budget; `free`: it does not.
- Each client runs in its own child process with an untimed 2-request warm-up; the server's
  counters and buckets are reset after it, then the clock starts.
- ladder: `generate()` with the openai backend at its defaults (`concurrency: auto`), a fresh
  cache, no `rate_limit:` (it learns the limit from the headers), max_retries 6.
- inspect_ai (run with the Python of `--inspect-python`, by default the script's own venv at
  .venv-inspect, made with --system-site-packages): `inspect_ai.eval` with
  `adaptive_connections=True` (its default: min 10, start 20, max 100) and no max_connections,
  the same prompts, max_tokens and temperature, logs cut down as in scripts/bench_api.py.
- utilisation: answered requests per second ÷ the limit (for a tokens/min limit: tokens the
  limiter charged per second ÷ the limit; each request costs its prompt's whitespace tokens +
  max_tokens). share_429: the server's 429 answers ÷ all requests it received. lost: prompts
  without an answered request (ladder: error samples). vs_inspect: ladder's wall ÷ inspect's.

With --variants: four variants (4 × 60 examples, zero_shot, the tests' sentiment experiment) of one
API model against a 1,200/min spending limiter, run by `run_main` at once (the default for
API-bound variants) and one by one (alternating, twice each); the last line is
`variants_vs_one_by_one=<at once ÷ one by one> variants_vs_bound=<at once ÷ the limit's bound>`.

The last line otherwise: `utilisation=<worst of ladder's runs> share_429=<worst> vs_inspect=<worst>
lost=<ladder's lost examples, all runs> mode=<mode> load_avg=<1 min>`.
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

MODEL = "gpt-4o-mini"
MAX_TOKENS = 8


def prompt_text(i: int) -> str:
    return f"Review {i}: the soup was cold"


def cost(i: int) -> int:
    """What the limiter charges prompt i (ladder.testing.limiter.request_tokens)."""
    return len(prompt_text(i).split()) + MAX_TOKENS


def start_server(folder: Path, a: argparse.Namespace, rpm: float | None, tpm: float | None) -> tuple:
    port_file = folder / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ladder.testing.fake_api", "--port", "0", "--port-file", str(port_file),
           "--latency", str(a.latency), "--limit-mode", a.mode]
    cmd += (["--rpm", str(rpm)] if rpm else []) + (["--tpm", str(tpm)] if tpm else [])
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not port_file.exists():
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit("the fake API server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{int(port_file.read_text())}"


def server_call(url: str, what: str) -> dict:
    req = urllib.request.Request(url + what, method="POST" if what == "/_reset" else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def run_ladder(a: argparse.Namespace) -> dict:
    from ladder.backends.base import CallStats, generate
    from ladder.cache import Cache
    from ladder.config import GenerationConfig
    from ladder.registry import BACKENDS
    from ladder.types import Message

    os.environ["LADDER_BENCH_KEY"] = "bench-key"
    cls = BACKENDS.get("openai")
    backend = cls(cls.Config(name=MODEL, base_url=a.url, api_key_env="LADDER_BENCH_KEY"))
    backend.preflight()
    gen = GenerationConfig(n=1, temperature=0, max_tokens=MAX_TOKENS)
    folder = Path(a.folder)
    generate(backend, Cache(folder / "warm-up"), [[Message("user", f"warm-up {i}")] for i in range(2)], gen)
    server_call(a.url, "/_reset")  # counters and buckets: the warm-up's spending is forgotten
    stats = CallStats()
    start = time.perf_counter()
    generate(backend, Cache(folder / "cache"), [[Message("user", prompt_text(i))] for i in range(a.requests)],
             gen, stats)
    wall = time.perf_counter() - start
    trace = backend.controller().report({"t": 0, "ok": 0, "rate_limited": 0, "waited": 0})
    return {"wall": wall, "errors": stats.errors, "concurrency_max": trace["concurrency_max_reached"],
            "concurrency_end": trace["concurrency_now"]}


def run_inspect(a: argparse.Namespace) -> dict:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.solver import generate as inspect_generate

    os.environ["OPENAI_API_KEY"] = "bench-key"
    logs = str(Path(a.folder) / "logs")

    def once(n: int):
        task = Task(dataset=[Sample(input=prompt_text(i) if n > 2 else f"warm-up {i}", target="") for i in range(n)],
                    solver=inspect_generate())
        return inspect_eval(task, model=f"openai/{MODEL}", model_base_url=a.url + "/v1", adaptive_connections=True,
                            max_tokens=MAX_TOKENS, temperature=0, display="none", log_dir=logs, log_samples=False,
                            log_realtime=False, score=False)

    once(2)
    server_call(a.url, "/_reset")
    start = time.perf_counter()
    log = once(a.requests)[0]
    wall = time.perf_counter() - start
    return {"wall": wall, "status": log.status, "errors": 0 if log.status == "success" else -1}


def spawn(who: str, a: argparse.Namespace, url: str, folder: Path) -> dict:
    python = a.inspect_python if who == "inspect" else sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [python, __file__, "--worker", who, "--url", url, "--folder", str(folder), "--requests", str(a.requests)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {who} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    s = server_call(url, "/_stats")
    r.update(requests=s["requests"], answered=s["unique_succeeded"], repeated=s["repeated_successes"],
             rejected=s["by_status"].get("429", 0), load=os.getloadavg()[0])
    r["lost"] = a.requests - r["answered"]
    return r


def bench_variants(rpm: float = 1200, examples: int = 60) -> None:
    import importlib

    import ladder.variants as variants
    from ladder.backends import limits
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY_ENV, api_experiment, varied

    os.environ[KEY_ENV] = "bench-key"
    specs = {n: {"task.instruction": f"Variant {n}: classify the sentiment of the review."} for n in "abcd"}
    walls: dict[str, list[float]] = {"together": [], "one_by_one": []}
    with FakeAPIServer(latency=0.2, responder=varied, limits={"rpm": rpm, "mode": "spend"}) as srv:
        for how in ("one_by_one", "together") * 2:
            importlib.reload(variants)
            if how == "one_by_one":
                variants.api_bound = lambda v: False
            tmp = Path(tempfile.mkdtemp())
            os.environ["LADDER_CACHE_DIR"] = str(tmp / "cache")  # nothing from an earlier run's cache
            limits.reset()
            path = api_experiment(tmp, "openai", srv.base_url, variants=specs, n_test=examples, model={"timeout": 10})
            srv.reset()
            start = time.perf_counter()
            exp = commands.load(path); variants.run_main(exp, variants.load_variants(exp))
            walls[how].append(time.perf_counter() - start)
            assert srv.stats()["unique_succeeded"] == 4 * examples and srv.stats()["repeated_successes"] == 0
    bound = 4 * examples / (rpm / 60)
    together, apart = min(walls["together"]), min(walls["one_by_one"])
    print(f"4 variants × {examples} examples at {rpm:g}/min (bound {bound:.1f} s): at once {walls['together']}, "
          f"one by one {walls['one_by_one']} (s)")
    print(f"variants_vs_one_by_one={together / apart:.3f} variants_vs_bound={together / bound:.3f} "
          f"load_avg={os.getloadavg()[0]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--limits", default="1200,6000,tpm:84000",
                   help="comma-separated: N = N requests/min; tpm:N = N tokens/min")
    p.add_argument("--mode", choices=["spend", "free"], default="spend")
    p.add_argument("--no-inspect", action="store_true")
    p.add_argument("--variants", action="store_true", help="time 4 API variants at once vs one by one")
    p.add_argument("--inspect-python", default=str(REPO / ".venv-inspect" / "bin" / "python"))
    p.add_argument("--worker", choices=["ladder", "inspect"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(run_ladder(a) if a.worker == "ladder" else run_inspect(a)))
        return
    if a.variants:
        bench_variants()
        return
    use_inspect = not a.no_inspect and Path(a.inspect_python).exists()
    if not use_inspect and not a.no_inspect:
        print(f"no inspect_ai Python at {a.inspect_python}: python -m venv --system-site-packages .venv-inspect "
              f"&& .venv-inspect/bin/pip install inspect-ai (or pass --inspect-python / --no-inspect)")
    worst = {"utilisation": float("inf"), "share_429": 0.0, "vs_inspect": 0.0, "lost": 0}
    for spec in a.limits.split(","):
        rpm, tpm = (None, float(spec[4:])) if spec.startswith("tpm:") else (float(spec), None)
        per_second = (tpm or rpm) / 60
        work = sum(cost(i) for i in range(a.requests)) if tpm else a.requests
        ideal = work / per_second
        with tempfile.TemporaryDirectory() as tmp:
            server, url = start_server(Path(tmp), a, rpm, tpm)
            try:
                runs = {who: spawn(who, a, url, Path(tmp) / who)
                        for who in ["ladder"] + (["inspect"] if use_inspect else [])}
            finally:
                server.terminate()
                server.wait(timeout=10)
        print(f"limit {spec} ({a.mode} mode), {a.requests} requests, latency {a.latency:g} s, ideal {ideal:.1f} s:")
        for who, r in runs.items():
            done = sum(cost(i) for i in range(a.requests)) if tpm else r["answered"]
            r["utilisation"] = done / r["wall"] / per_second
            r["share_429"] = r["rejected"] / max(1, r["requests"])
            print(f"  {who:7s} wall={r['wall']:.1f}s utilisation={r['utilisation']:.3f} share_429={r['share_429']:.3f} "
                  f"requests={r['requests']} answered={r['answered']} repeated={r['repeated']} lost={r['lost']}"
                  + (f" concurrency max={r['concurrency_max']} end={r['concurrency_end']}" if who == "ladder" else
                     f" status={r['status']}") + f" load_avg_1min={r['load']:.2f}")
        lad = runs["ladder"]
        worst["utilisation"] = min(worst["utilisation"], lad["utilisation"])
        worst["share_429"] = max(worst["share_429"], lad["share_429"])
        worst["lost"] += lad["lost"] + lad["errors"]
        if "inspect" in runs:
            worst["vs_inspect"] = max(worst["vs_inspect"], lad["wall"] / runs["inspect"]["wall"])
    vs = f"{worst['vs_inspect']:.3f}" if use_inspect else "na"
    print(f"utilisation={worst['utilisation']:.3f} share_429={worst['share_429']:.3f} vs_inspect={vs} "
          f"lost={worst['lost']} mode={a.mode} load_avg={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
