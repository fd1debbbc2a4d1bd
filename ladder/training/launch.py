"""`launch:` — training in child processes started by a launcher (accelerate, torchrun), for every
training stage (sft, rl, reward_model).

The stage writes what training needs (a spec, its data) into its run folder and runs
`<launch> -m ladder.training.<module> <spec.json>`; each rank reads the files, trl/accelerate do
the distribution (DDP, DeepSpeed, FSDP), and only the main process writes the results. The stage
process itself stays one process: it holds the experiment lock, and for rl it also keeps the reward
(ladder/training/remote.py serves it to the ranks over a local socket).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

from ladder.errors import ConfigError, LadderError
from ladder.progress import console


def check_launch(v: str | None) -> str | None:
    """Validate a stage's `launch:` (pydantic validator body: raises ValueError).

    One trap is refused here: `accelerate launch --cpu --num_processes N` starts ONE process,
    whatever N says — accelerate (1.15) starts several CPU processes only under mpirun
    (`--mpirun_hostfile`); without it `--cpu` takes its single-process launcher."""
    if v is None:
        return v
    try:
        argv = shlex.split(v)
    except ValueError as exc:
        raise ValueError(f"launch is not a command line ({exc})") from None
    if not argv:
        raise ValueError("launch is empty; leave it out to train in the stage's own process")
    opts = {a.split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    if Path(argv[0]).name == "accelerate" and "launch" in argv[1:2] and "__cpu" in opts \
            and processes(argv) > 1 and not opts & {"__mpirun_hostfile", "__config_file"}:
        raise ValueError(f"'{v}' starts one process, not {processes(argv)}: accelerate launch --cpu runs several "
                         f"processes only under mpirun (--mpirun_hostfile). On CPUs use 'accelerate launch "
                         f"--multi_gpu --num_processes {processes(argv)}' (torchrun underneath; trl trains on "
                         f"the CPU with gloo when no GPU is visible) or 'torchrun --nproc_per_node "
                         f"{processes(argv)}'")
    return v


def processes(argv: list[str]) -> int:
    """The process count an accelerate/torchrun command line names (1 when it names none)."""
    for i, a in enumerate(argv):
        name, _, value = a.partition("=")
        if name.replace("-", "_") in ("__num_processes", "__nproc_per_node"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            return int(value) if value.isdigit() else 1
    return 1


def find_launcher(program: str) -> str | None:
    """The launcher's executable: first beside this Python (a venv's bin/, where `pip install
    accelerate` put it, even when that venv is not on PATH because ladder was started as
    venv/bin/ladder or venv/bin/python -m ...), then on PATH; None when neither has it."""
    if os.sep not in program:
        here = Path(sys.executable).parent / program
        if here.is_file() and os.access(here, os.X_OK):
            return str(here)
    return shutil.which(program)


def check_launcher(launch: str | None, field: str) -> None:
    """Before any work: the launcher's program exists here (a typo fails now, not after the
    best-of-N run)."""
    if launch is None:
        return
    program = shlex.split(launch)[0]
    if find_launcher(program) is None:
        raise ConfigError(f"the launcher '{program}' is not found (launch: '{launch}')", field=field,
                          fix="install it (pip install accelerate) or give its full path, e.g. "
                              "'accelerate launch --num_processes 2' or 'torchrun --nproc_per_node 2'")


def run_launched(launch: str, module: str, spec: Path, field: str, *, env: Mapping[str, str] | None = None,
                 serve: Callable[[subprocess.Popen], None] | None = None, label: str = "training") -> None:
    """Run `<launch> -m <module> <spec>` and wait for it (`serve`, when given, is called with the
    running process and returns when it ends: rl answers its reward requests meanwhile). A non-zero
    exit is a LadderError naming the launcher and the exit code (exit code 2 of `ladder run`)."""
    check_launcher(launch, field)
    argv = shlex.split(launch)
    command = [find_launcher(argv[0]) or argv[0], *argv[1:], "-m", module, str(spec)]
    console.print(f"{label} under: {shlex.join(command)}", highlight=False)
    process = subprocess.Popen(command, env={**os.environ, **(env or {})})
    try:
        if serve is not None:
            serve(process)
        code = process.wait()
    finally:
        if process.poll() is None:  # Ctrl-C or an error here: the ranks must not outlive the stage
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if code != 0:
        how = f"exit code {code}"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        raise LadderError(f"training under '{launch}' failed ({how})", field=field,
                          fix="see the output above; re-running resumes from the last checkpoint")


def rank_main(argv: list[str], module: str, spec_name: str, run: Callable[[Path], dict],
              leave_out: str) -> None:
    """The body of `python -m ladder.training.<module> <run>/<spec_name>` in each launched rank:
    check the command line, train (`run(spec_path)` returns the summary), and print the summary
    once — from rank 0, not once per rank — without its long `leave_out` list."""
    import json

    if len(argv) != 1:
        raise SystemExit(f"usage: python -m ladder.training.{module} <run_dir>/{spec_name}")
    try:
        summary = run(Path(argv[0]))
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: erase this rank's bar before it exits
        from ladder.progress import stop_live

        stop_live()
        raise
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: v for k, v in summary.items() if k != leave_out}))
