"""The first ten minutes, timed: from a data file to a finished first run, as the README tells a newcomer.

    python scripts/bench_first_run.py [--data data/sentiment]

In a fresh temporary folder (its own empty model-call cache, so nothing is reused from earlier
runs) with a copy of the data (a file or a folder of train/test files — a user's own data sits
beside their YAML), runs the two commands the README gives:

    ladder init <data> --yes        writes exp.yaml (target, choices, template, instruction guessed)
    ladder run exp.yaml             the rungs exp.yaml lists (zero_shot and few_shot), then the table

each as `python -m ladder.cli` in a subprocess (what the `ladder` console script does), and
prints the wall seconds of each. This is machine time; a person also types the two commands
(and, on a terminal without --yes, confirms init's guesses). The last line is
`first_run_s=<total> init_s=<x> run_s=<y> load_avg=<1 5 15 min>` (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ladder.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ladder {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    print(done.stdout.rstrip())
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/sentiment",
                   help="a data file or folder, relative to the repository (default: data/sentiment)")
    a = p.parse_args()
    source = (REPO / a.data).resolve()
    if not source.exists():
        raise SystemExit(f"--data {a.data}: no such file or folder under {REPO}")
    with tempfile.TemporaryDirectory(prefix="ladder-first-run-") as tmp:
        work = Path(tmp)
        target = work / source.name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "LADDER_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}
        init_s = timed(["init", source.name, "--yes"], work, env)
        run_s = timed(["run", "exp.yaml"], work, env)
    total = init_s + run_s
    print(f"ladder init {source.name} --yes: {init_s:.1f}s; ladder run exp.yaml: {run_s:.1f}s; "
          f"cores={os.cpu_count()}")
    print(f"first_run_s={total:.1f} init_s={init_s:.1f} run_s={run_s:.1f} "
          f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
