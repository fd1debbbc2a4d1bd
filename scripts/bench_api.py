"""Throughput of ladder's API backends against the fake server, through the full generate() path.

    python scripts/bench_api.py                      # 1,000 requests, 200 ms latency, concurrency 64
    python scripts/bench_api.py --backend anthropic --requests 500 --profile
    python scripts/bench_api.py --http-client aiohttp     # the SDK's aiohttp transport

The fake server runs as its own process (in-process, its thread would compete with the client
for the GIL), answers each request after `--latency`, and ladder's backend sends one request per
prompt through `generate()` with a fresh on-disk cache — the path a stage takes. The ideal wall
time is requests × latency ÷ concurrency; the last line printed is `ratio_to_ideal=<x>`.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["openai", "anthropic"], default="openai")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--http-client", choices=["httpx", "aiohttp"], default="httpx",
                   help="the SDK's transport (aiohttp needs pip install aiohttp)")
    p.add_argument("--profile", action="store_true", help="print the client's top functions by own time")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(Path(tmp), a.latency)
        try:
            os.environ["LADDER_BENCH_KEY"] = "bench-key"
            backend_cls = BACKENDS.get(a.backend)
            backend = backend_cls(backend_cls.Config(name="gpt-4o-mini", base_url=url, concurrency=a.concurrency,
                                                     api_key_env="LADDER_BENCH_KEY", http_client=a.http_client))
            backend.preflight()  # as the runner does before any stage: key check, SDK import
            cache = Cache(Path(tmp) / "cache")
            prompts = [[Message("user", f"Review {i}: the soup was cold")] for i in range(a.requests)]
            gen = GenerationConfig(n=1, temperature=0, max_tokens=8)
            stats = CallStats()
            profiler = cProfile.Profile() if a.profile else None
            start, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            generate(backend, cache, prompts, gen, stats)
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            with urllib.request.urlopen(url + "/_stats", timeout=10) as resp:
                served = json.loads(resp.read())
            cache.close()
        finally:
            server.terminate()
            server.wait(timeout=10)

    ideal = a.requests * a.latency / a.concurrency
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    print(f"backend={a.backend} http_client={a.http_client} requests={a.requests} latency={a.latency:g}s concurrency={a.concurrency}")
    print(f"generated={stats.generated} errors={stats.errors} server_successes={served['successes']} "
          f"max_in_flight={served['max_in_flight']}")
    # Client CPU per request is what the SDK and ladder cost; wall time also depends on the load.
    print(f"client_cpu={cpu:.3f}s ({cpu / a.requests * 1000:.2f} ms/request) "
          f"load_avg_1min={os.getloadavg()[0]:.2f} cores={os.cpu_count()}")
    print(f"wall={wall:.3f}s ideal={ideal:.3f}s")
    print(f"ratio_to_ideal={wall / ideal:.3f}")


if __name__ == "__main__":
    main()
