"""Wall time of `ladder --help` as a user runs it, Python start-up included (target: < 1 s).

    python scripts/bench_cli.py [--repeats 10]

Runs `python -m ladder.cli --help` (what the `ladder` console script does, plus runpy) in a fresh
subprocess `--repeats` times and reports the median, next to a bare `python -c pass` for the
interpreter's own start-up, with the load average (the machine may be shared). The last line is
`help_s=<median seconds>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    timed([sys.executable, "-m", "ladder.cli", "--help"], env)  # warm the file-system cache once
    bare = [timed([sys.executable, "-c", "pass"], env) for _ in range(a.repeats)]
    helps = [timed([sys.executable, "-m", "ladder.cli", "--help"], env) for _ in range(a.repeats)]
    print(f"python -c pass: median {statistics.median(bare):.3f}s; ladder --help: median {statistics.median(helps):.3f}s "
          f"(min {min(helps):.3f}, max {max(helps):.3f}) over {a.repeats} runs; cores={os.cpu_count()} "
          f"load_avg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"help_s={statistics.median(helps):.3f}")


if __name__ == "__main__":
    main()
