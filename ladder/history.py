"""The research log: one entry per `ladder run` / `ladder climb`, kept forever.

results/<exp>/log.jsonl   one JSON object a line, appended (never rewritten)
results/<exp>/LOG.md      the same, readable: rebuilt from log.jsonl after each entry

An entry records when, from which code (git sha of the working directory, and ladder's own sha or
version), the command line and its `--set` overrides, the resolved config with its unified diff
from the previous entry, the table as markdown and as rows, the warnings and the next steps. An
override that replaces a row of summary.csv therefore never makes the earlier number vanish
without a trace: its table is still in the log. `ladder log results/<exp>` prints it.
"""

from __future__ import annotations

import difflib
import fcntl
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ladder.store import _io_error, atomic_write, read_jsonl

LOG = "log.jsonl"
LOG_MD = "LOG.md"
ROW_KEYS = ("variant", "stage", "metric", "value", "ci_low", "ci_high", "n", "diff_prev", "diff_prev_ci_low",
            "diff_prev_ci_high", "run_id")
"""The columns of each summary.csv row the log keeps as data (the markdown table has the rest)."""


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path) -> dict[str, Any] | None:
    """{sha, dirty} of the repository `cwd` is in, or None outside one."""
    sha = _git(cwd, "rev-parse", "HEAD")
    if not sha:
        return None
    return {"sha": sha, "dirty": bool(_git(cwd, "status", "--porcelain", "--untracked-files=no"))}


@functools.cache
def ladder_source() -> dict[str, Any]:
    """ladder's own provenance: the sha of its source checkout when it runs from one (an editable
    install), else the installed version."""
    import ladder

    root = Path(ladder.__file__).resolve().parent.parent
    top = _git(root, "rev-parse", "--show-toplevel")
    # Only ladder's own checkout: a wheel inside some other repository's virtualenv is not one.
    if top and Path(top).resolve() == root:
        state = git_state(root)
        if state:
            return {**state, "version": ladder.__version__}
    return {"version": ladder.__version__}


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    return shlex.join(["ladder", *argv[1:]])


def entry(folder: Path, command: str, overrides: list[str], rows: list[dict[str, Any]], table_md: str,
          warnings: list[str], steps: list[str], outcome: str | None = None,
          argv: list[str] | None = None) -> dict[str, Any]:
    """One log entry for the run that just wrote `folder` (its experiment.yaml is the config)."""
    config = (folder / "experiment.yaml").read_text(encoding="utf-8") if (folder / "experiment.yaml").exists() else ""
    previous = last_entry(folder)
    before = previous.get("config", "") if previous else ""
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), config.splitlines(keepends=True),
                                        "previous/experiment.yaml", "experiment.yaml")) if previous else ""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "argv": command_line(argv),
        "overrides": list(overrides),
        "cwd": str(Path.cwd()),
        "git": git_state(Path.cwd()),
        "ladder": ladder_source(),
        "config": config,
        "config_diff": diff,
        "first": previous is None,
        "rows": [{k: row[k] for k in ROW_KEYS if k in row} for row in rows],
        "table": table_md,
        "warnings": warnings,
        "next_steps": steps,
        **({"outcome": outcome} if outcome else {}),
    }


def last_entry(folder: Path) -> dict[str, Any] | None:
    entries = read_jsonl(folder / LOG)
    return entries[-1] if entries else None


def append(folder: Path, item: dict[str, Any]) -> None:
    """Append one entry to log.jsonl (one write of one line, under an exclusive lock so two
    processes sharing the folder never interleave), then rebuild LOG.md from it atomically."""
    path = folder / LOG
    line = json.dumps(item, ensure_ascii=False, default=str) + "\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                read_jsonl(path, repair=True)  # a torn last line (a killed writer) is cut first
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
                atomic_write(folder / LOG_MD, render(read_jsonl(path)))
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    except OSError as exc:
        raise _io_error(path, exc) from None


def record(folder: Path, command: str, overrides: list[str], outcome: str | None = None) -> None:
    """Log the run that just finished from what it left on disk (summary table, guards, advice)."""
    from ladder.advice import next_steps
    from ladder.evidence import Evidence
    from ladder.table import markdown, table_rows

    from ladder import variants_folder

    if variants_folder.combined_info(folder):  # a variants run: the combined table, every variant's advice
        names, baseline = variants_folder.combined_info(folder)
        ev = variants_folder.flat_evidence(folder)  # stages labelled <variant>/<stage>
        from ladder.variants import combined_rows

        rows = combined_rows(folder, names, baseline)
        table_md = variants_folder.markdown(rows, baseline) if rows else "(no stage finished)\n"
        steps = [s.text for s in variants_folder.steps(folder)]
    else:
        ev = Evidence.load(folder)
        rows = table_rows(ev)
        table_md = markdown(rows, ev.results) if rows else "(no stage finished)\n"
        steps = [s.text for s in next_steps(ev)]
    warnings = list(dict.fromkeys(f"{g.name}: {g.message}" for r in ev.results for g in r.guards
                                  if g.level == "warn"))
    append(folder, entry(folder, command, overrides, rows, table_md, warnings, steps, outcome))


def _code(item: dict[str, Any]) -> str:
    git = item.get("git")
    here = f"{git['sha'][:10]}{' (uncommitted changes)' if git['dirty'] else ''}" if git else "not a git repository"
    lad = item.get("ladder") or {}
    ladder = f"{lad['sha'][:10]}{' (uncommitted changes)' if lad.get('dirty') else ''}" if lad.get("sha") \
        else f"version {lad.get('version', '?')}"
    return f"working directory {here}; ladder {ladder}"


def render(entries: list[dict[str, Any]], start: int = 1) -> str:
    """LOG.md: the entries, oldest first, each with its command, code, config diff, table,
    warnings and next steps."""
    out = ["# Research log", "",
           "One entry per `ladder run` / `ladder climb`, oldest first (data: log.jsonl).", ""]
    for i, item in enumerate(entries, start):
        out += [f"## {i}. {item['time']} · `{item['argv']}`", ""]
        out.append(f"- code: {_code(item)}")
        if item.get("overrides"):
            out.append("- overrides: " + ", ".join(f"`{o}`" for o in item["overrides"]))
        if item.get("outcome"):
            out.append(f"- outcome: {item['outcome']}")
        if item.get("first"):
            out.append("- config: first entry (see experiment.yaml)")
        elif item.get("config_diff"):
            out += ["- config changed since the previous entry:", "", "```diff", item["config_diff"].rstrip("\n"), "```"]
        else:
            out.append("- config: unchanged since the previous entry")
        out += ["", item.get("table", "").rstrip("\n"), ""]
        if item.get("next_steps"):
            out += ["Next steps:", *(f"- {s}" for s in item["next_steps"]), ""]
    return "\n".join(out).rstrip("\n") + "\n"
