"""How fast the playground page fills: 20 rows × 3 columns against a fake OpenAI server that
answers each request after 200 ms, through `ladder play`'s own HTTP API (what the page calls).

    python scripts/bench_play.py                  # 20 rows, 3 columns, 200 ms latency
    python scripts/bench_play.py --rows 50 --latency 0.5

The fake server runs as its own process (in-process, its thread would compete for the GIL) and
`ladder play` as another, exactly as a user starts it (`--no-browser`). The page is opened (GET /
and /api/state) and three columns are added — three prompt versions on two models — before the
clock starts; then one POST /api/run, timed from sending it to the first streamed cell and to the
last, with a fresh model-call cache (every cell is a real request), then the same run again
(every cell from the cache). The targets (issue 26): all cells within 1.5 s, the first within
0.5 s, the repeat within 0.3 s. The last line prints the figures and the load average.
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

from tests.backends.api_support import KEY, KEY_ENV  # noqa: E402
from tests.conftest import make_rows, write_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-play-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: KEY, "LADDER_CACHE_DIR": str(tmp / "cache")}
    port_file = tmp / "port"
    fake = subprocess.Popen([sys.executable, "-m", "ladder.testing.fake_api", "--port", "0", "--port-file",
                             str(port_file), "--latency", str(args.latency)], env=env)
    play = None
    try:
        while not port_file.exists() or not port_file.read_text().strip():
            time.sleep(0.05)
        base_url = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
        write_jsonl(tmp / "data" / "test.jsonl", make_rows(200, seed=2))
        write_jsonl(tmp / "data" / "train.jsonl", make_rows(50, seed=1))
        cfg = tmp / "exp.yaml"
        cfg.write_text(json.dumps({
            "name": "bench", "results_dir": str(tmp / "results"),
            "task": {"data": {"train": "data/train.jsonl", "test": "data/test.jsonl"}, "target": "label",
                     "instruction": "Classify the sentiment.", "template": "Review: {text}",
                     "choices": ["positive", "negative", "neutral"]},
            "model": {"backend": "openai", "name": "fake-a", "base_url": base_url, "api_key_env": KEY_ENV,
                      "price": {"input": 0.1, "output": 0.1}},
            "generation": {"max_tokens": 8}, "stages": [{"type": "zero_shot"}]}))
        play = subprocess.Popen([sys.executable, "-m", "ladder.cli", "play", str(cfg), "--no-browser", "--n",
                                 str(args.rows)], env=env, stdout=subprocess.PIPE, text=True)
        url = play.stdout.readline().strip().rsplit(" ", 1)[-1]
        root, token = url.split("/?")[0], url.split("token=")[1]

        def call(path: str, data: dict | None = None):
            req = urllib.request.Request(root + path, data=None if data is None else json.dumps(data).encode(),
                                         headers={"X-Ladder-Token": token, "Content-Type": "application/json"})
            return urllib.request.urlopen(req, timeout=60)

        call(f"/?token={token}").read()
        state = json.load(call("/api/state"))
        base = state["columns"][0]["spec"]
        call("/api/column", {"instruction": "Sentiment? One word.", "template": base["template"]}).read()
        call("/api/column", {"instruction": base["instruction"], "template": base["template"], "model": "fake-b"}).read()
        while not json.load(call("/api/state"))["warm"]:  # the page's start-up check (SDK import, model list)
            time.sleep(0.1)

        def timed_run() -> tuple[float, float, int]:
            t0 = time.perf_counter()
            first, cells = None, 0
            with call("/api/run", {}) as res:
                for line in res:
                    item = json.loads(line)
                    if item["type"] == "cell":
                        cells += 1
                        assert not item["error"], item["error"]
                        first = first or time.perf_counter() - t0
            return first, time.perf_counter() - t0, cells

        first, total, cells = timed_run()
        assert cells == 3 * args.rows, cells
        _, again, cells2 = timed_run()
        assert cells2 == cells
        print(f"{args.rows} rows x 3 columns, {args.latency * 1000:.0f} ms server: first cell {first:.3f} s, "
              f"all {cells} cells {total:.3f} s; repeated run (cache) {again:.3f} s")
        print(f"first_cell_s={first:.3f} all_cells_s={total:.3f} cached_rerun_s={again:.3f} "
              f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for proc in (play, fake):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
