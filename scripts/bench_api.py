"""Throughput of ladder's API backends against the fake server, through the full generate() path,
and the same 1,000 requests sent by inspect_ai for comparison.

    python scripts/bench_api.py                      # 1,000 requests, 200 ms latency, concurrency 64
    python scripts/bench_api.py --repeats 5          # more alternating ladder / inspect pairs
    python scripts/bench_api.py --backend anthropic --requests 500 --profile   # (no inspect run)
    python scripts/bench_api.py --http-client httpx       # the SDK's httpx transport (default: auto = aiohttp)

What is measured, and why it is fair:

- The fake server (ladder/testing/fake_api.py) runs as its own process (in-process, its thread
  would compete with the clients for the GIL) and answers each request after `--latency`. Its
  counters are reset before each timed run and read after it, so every run shows how many
  requests the server really received (no client cache can hide a request), how many it
  answered, how many the SDK marked as retries, and the most it saw in flight at once.
- ladder: one request per prompt through `generate()` with a fresh on-disk cache each repeat —
  the path a stage takes, cache writes included. A 2-prompt warm-up (SDK import, the HTTP
  stack's first load; its requests are reset away) runs before the clock starts.
- inspect_ai (pip install inspect-ai; not a ladder dependency): `inspect_ai.eval(Task(...))`
  with the same 1,000 prompts as single user messages, the same max_tokens and temperature,
  model `openai/<name>` pointed at the same server through `model_base_url` (dummy key), and
  `max_connections` = the same concurrency (explicit max_connections also turns off inspect's
  adaptive concurrency, and sample concurrency follows it). Its log overhead is cut as far as
  it goes: display none, log_samples=False, log_realtime=False, logs to a temporary folder
  (the eval header is still written); inspect's own cache is off by default. A 2-sample warm-up
  eval runs first, like ladder's warm-up, so imports and registries are not timed. inspect uses
  the openai SDK over httpx; ladder the transport `--http-client` names (auto: aiohttp when
  installed, ladder's default).
- bare SDK: the floor under ladder — the same requests from `concurrency` workers looping over the
  openai SDK client ladder builds (same transport), with nothing else (no cache, no Samples). ladder ÷ bare SDK is
  the harness's own overhead; bare SDK ÷ ideal is what the SDK and HTTP stack cost on this machine.
- Each timed run is its own child process (`--worker ladder|inspect`), so neither client's
  process-wide set-up (inspect installs logging handlers and hooks) touches the other's run.
- Repeats alternate which client goes first; the medians of the wall times are reported.

The ideal wall time is requests × latency ÷ concurrency. The last line printed is
`ratio_to_ideal=<ladder / ideal> ratio_to_inspect=<ladder wall / inspect wall>` (< 1: ladder faster;
`na` when inspect_ai is not installed or not run).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ladder.backends.base import CallStats, generate  # noqa: E402
from ladder.cache import Cache  # noqa: E402
from ladder.config import GenerationConfig  # noqa: E402
from ladder.registry import BACKENDS  # noqa: E402
from ladder.types import Message  # noqa: E402

MODEL = "gpt-4o-mini"  # a chat-completions model for inspect too (o-series / gpt-5 would use its Responses API)


def start_server(folder: Path, latency: float) -> tuple[subprocess.Popen, str]:
    port_file = folder / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "ladder.testing.fake_api", "--port", "0",
                               "--port-file", str(port_file), "--latency", str(latency)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not port_file.exists():
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit("the fake API server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{int(port_file.read_text())}"


def server_stats(url: str, reset: bool = False) -> dict:
    """The server's counters (without the per-key table); reset=True zeroes them instead."""
    req = urllib.request.Request(url + ("/_reset" if reset else "/_stats"), method="POST" if reset else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.loads(resp.read())
    out.pop("successes_per_key", None)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prompt_text(i: int) -> str:
    return f"Review {i}: the soup was cold"


def run_ladder(a: argparse.Namespace, url: str, folder: Path, profiler: cProfile.Profile | None) -> dict:
    os.environ["LADDER_BENCH_KEY"] = "bench-key"
    backend_cls = BACKENDS.get(a.backend)
    backend = backend_cls(backend_cls.Config(name=MODEL, base_url=url, concurrency=a.concurrency,
                                             api_key_env="LADDER_BENCH_KEY", http_client=a.http_client))
    backend.preflight()  # as the runner does before any stage: key check
    gen = GenerationConfig(n=1, temperature=0, max_tokens=8)
    # Warm-up, untimed (inspect gets the same): the SDK import and the HTTP stack's first load.
    generate(backend, Cache(folder / "warm-up"), [[Message("user", f"warm-up {i}")] for i in range(2)], gen)
    cache = Cache(folder)  # a fresh folder per run: nothing is answered from the cache
    prompts = [[Message("user", prompt_text(i))] for i in range(a.requests)]
    stats = CallStats()
    server_stats(url, reset=True)
    start, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    generate(backend, cache, prompts, gen, stats)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    cache.close()
    return {"wall": wall, "cpu": cpu, "ok": stats.generated, "errors": stats.errors, "server": server_stats(url)}


def run_sdk(a: argparse.Namespace, url: str, n: int) -> dict:
    """The floor under ladder: the same requests from a bare loop over the openai SDK — the client
    ladder builds (connection limits, no SDK retries), `concurrency` workers on one event loop,
    the same generic `client.post`, the body parsed as JSON, and nothing else (no cache, no Samples)."""
    import asyncio

    import openai

    async def loop() -> None:
        transport = BACKENDS.get("openai")(BACKENDS.get("openai").Config(
            name=MODEL, api_key_env=None, http_client=a.http_client)).transport()
        http = openai.DefaultAioHttpClient if transport == "aiohttp" else openai.DefaultAsyncHttpxClient
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(max_connections=a.concurrency,
                                                        max_keepalive_connections=a.concurrency)
        client = openai.AsyncOpenAI(api_key="bench-key", base_url=url, max_retries=0, timeout=120.0,
                                    http_client=http(limits=limits))
        todo = iter(range(n))

        async def worker() -> None:
            for i in todo:
                body = {"model": MODEL, "messages": [{"role": "user", "content": prompt_text(i)}], "n": 1,
                        "temperature": 0, "top_p": 1.0, "max_tokens": 8}
                json.loads(await client.post("/chat/completions", body=body, cast_to=bytes))

        await asyncio.gather(*[worker() for _ in range(min(a.concurrency, n))])
        await client.close()

    asyncio.run(loop())  # warm-up is the caller's: run_sdk(..., 2) first
    return {}


def time_sdk(a: argparse.Namespace, url: str) -> dict:
    run_sdk(a, url, 2)  # warm-up: the SDK import and the HTTP stack's first load, untimed
    server_stats(url, reset=True)
    start, cpu = time.perf_counter(), time.process_time()
    run_sdk(a, url, a.requests)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "server": server_stats(url)}


def inspect_available() -> bool:
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        return False
    return True


def run_inspect(a: argparse.Namespace, url: str, log_dir: Path, n: int) -> dict:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.solver import generate as inspect_generate

    os.environ["OPENAI_API_KEY"] = "bench-key"  # dummy: the fake server accepts any key
    task = Task(dataset=[Sample(input=prompt_text(i), target="") for i in range(n)], solver=inspect_generate())
    server_stats(url, reset=True)
    start, cpu = time.perf_counter(), time.process_time()
    logs = inspect_eval(task, model=f"openai/{MODEL}", model_base_url=url + "/v1", max_connections=a.concurrency,
                        max_tokens=8, temperature=0, display="none", log_dir=str(log_dir), log_samples=False,
                        log_realtime=False, score=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    log = logs[0]
    usage = sum(u.output_tokens for u in log.stats.model_usage.values()) if log.stats.model_usage else 0
    return {"wall": wall, "cpu": cpu, "status": log.status, "output_tokens": usage, "server": server_stats(url)}


def describe(name: str, r: dict, a: argparse.Namespace) -> str:
    s = r["server"]
    ok = s["requests"] == s["successes"] == a.requests and s["sdk_retries"] == 0
    return (f"  {name:8s} wall={r['wall']:.3f}s cpu={r['cpu']:.3f}s ({r['cpu'] / a.requests * 1000:.2f} ms/request) "
            f"server: requests={s['requests']} answered={s['successes']} unique={s['unique_requests']} "
            f"sdk_retries={s['sdk_retries']} max_in_flight={s['max_in_flight']}"
            + ("" if ok else "  <-- NOT exactly one answered request per prompt")
            + f" server_cpu={r.get('server_cpu', 0):.2f}s load_avg_1min={r['load']:.2f}")


def worker(a: argparse.Namespace) -> None:
    """One timed run in this (child) process; its result is the last line, as JSON."""
    folder = Path(a.folder)
    if a.worker == "ladder":
        profiler = cProfile.Profile() if a.profile else None
        r = run_ladder(a, a.url, folder / "cache", profiler)
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    elif a.worker == "sdk":
        r = time_sdk(a, a.url)
    else:
        run_inspect(a, a.url, folder / "logs", 2)  # warm-up: imports, registries, first client — untimed
        r = run_inspect(a, a.url, folder / "logs", a.requests)
    r["load"] = os.getloadavg()[0]
    print(json.dumps(r))


def spawn(who: str, a: argparse.Namespace, url: str, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", who, "--url", url, "--folder", str(folder),
           "--backend", a.backend, "--requests", str(a.requests), "--concurrency", str(a.concurrency),
           "--http-client", a.http_client] + (["--profile"] if a.profile and who == "ladder" else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {who} run failed:\n{done.stdout}\n{done.stderr}")
    *before, last = done.stdout.strip().splitlines()
    if before:
        print("\n".join(before))
    return json.loads(last)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["openai", "anthropic"], default="openai")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="rounds of ladder / bare SDK / inspect, order alternating")
    p.add_argument("--http-client", choices=["auto", "httpx", "aiohttp"], default="auto",
                   help="ladder's SDK transport (auto, the default: aiohttp when installed)")
    p.add_argument("--no-inspect", action="store_true", help="skip the inspect_ai comparison")
    p.add_argument("--profile", action="store_true", help="print ladder's top functions by own time")
    p.add_argument("--worker", choices=["ladder", "sdk", "inspect"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return

    use_inspect = not a.no_inspect and a.backend == "openai"
    if use_inspect and not inspect_available():
        print("inspect_ai is not installed, so there is no comparison with it: pip install inspect-ai "
              "(it is not a ladder dependency), or pass --no-inspect")
        use_inspect = False
    elif a.backend != "openai" and not a.no_inspect:
        print("the inspect_ai comparison runs with --backend openai only")

    clients = ["ladder"] + (["sdk"] if a.backend == "openai" else []) + (["inspect"] if use_inspect else [])
    runs: dict[str, list[dict]] = {c: [] for c in clients}
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(Path(tmp), a.latency)
        try:
            for rep in range(a.repeats):
                print(f"repeat {rep + 1}:")
                for who in clients if rep % 2 == 0 else clients[::-1]:
                    before = cpu_seconds(server.pid)
                    r = spawn(who, a, url, Path(tmp) / f"{who}{rep}")
                    r["server_cpu"] = cpu_seconds(server.pid) - before
                    runs[who].append(r)
                    print(describe(who, r, a))
        finally:
            server.terminate()
            server.wait(timeout=10)

    ideal = a.requests * a.latency / a.concurrency
    ladder_wall = statistics.median(r["wall"] for r in runs["ladder"])
    transport = BACKENDS.get(a.backend)(BACKENDS.get(a.backend).Config(
        name=MODEL, api_key_env=None, http_client=a.http_client)).transport()
    print(f"backend={a.backend} http_client={a.http_client} ({transport}) requests={a.requests} latency={a.latency:g}s "
          f"concurrency={a.concurrency} repeats={a.repeats} cores={os.cpu_count()} "
          f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"ladder:  median wall={ladder_wall:.3f}s ideal={ideal:.3f}s "
          f"cpu={statistics.median(r['cpu'] for r in runs['ladder']):.3f}s errors={sum(r['errors'] for r in runs['ladder'])}")
    if runs.get("sdk"):
        sdk_wall = statistics.median(r["wall"] for r in runs["sdk"])
        print(f"bare SDK: median wall={sdk_wall:.3f}s ({sdk_wall / ideal:.3f} × ideal) "
              f"cpu={statistics.median(r['cpu'] for r in runs['sdk']):.3f}s; ladder / bare SDK = {ladder_wall / sdk_wall:.3f}")
    to_inspect = "na"
    if runs.get("inspect"):
        inspect_wall = statistics.median(r["wall"] for r in runs["inspect"])
        print(f"inspect: median wall={inspect_wall:.3f}s cpu={statistics.median(r['cpu'] for r in runs['inspect']):.3f}s "
              f"status={','.join(sorted({r['status'] for r in runs['inspect']}))}")
        to_inspect = f"{ladder_wall / inspect_wall:.3f}"
    print(f"ratio_to_ideal={ladder_wall / ideal:.3f} ratio_to_inspect={to_inspect}")


if __name__ == "__main__":
    main()
