"""The research log: every run and climb appends an entry; overrides never erase an earlier table."""

from __future__ import annotations

import json
import subprocess
import sys

from ladder.config import load_experiment
from ladder.history import LOG, LOG_MD, render
from ladder.store import read_json, read_jsonl
from ladder.tasks import load_task
from tests.backends.api_support import ENV, ServerProcess, api_experiment


def ladder(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, env={**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)


def test_runs_append_entries_with_config_diff_and_every_table(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    with ServerProcess(tmp_path) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, subsample={"n": 30})
        first = ladder(tmp_path, "run", path)
        assert first.returncode == 0, first.stderr
        second = ladder(tmp_path, "run", path, "--set", "subsample.n=20")
        assert second.returncode == 0, second.stderr
    folder = tmp_path / "results" / "t"
    entries = read_jsonl(folder / LOG)
    assert len(entries) == 2
    one, two = entries
    assert one["first"] and one["command"] == "run" and one["overrides"] == [] and one["git"]["sha"] == sha
    assert one["ladder"].get("version") and one["argv"].startswith("ladder run ")
    assert two["overrides"] == ["subsample.n=20"] and "--set subsample.n=20" in two["argv"]
    assert "-  n: 30" in two["config_diff"] and "+  n: 20" in two["config_diff"]
    # The override replaced the zero_shot row of summary.csv; the log still has the n=30 table.
    assert [r["n"] for r in one["rows"]] == [30] and [r["n"] for r in two["rows"]] == [20]
    assert "| zero_shot |" in one["table"] and "| 30 |" in one["table"] and "| 20 |" in two["table"]
    assert one["next_steps"] and any("examples evaluated" in s for s in one["next_steps"])
    md = (folder / LOG_MD).read_text()
    assert md == render(entries) and md.count("## ") == 2 and "```diff" in md
    printed = ladder(tmp_path, "log", folder)
    assert printed.returncode == 0 and printed.stdout == md
    tail = ladder(tmp_path, "log", folder, "--last", "1")
    assert "## 2." in tail.stdout and "## 1." not in tail.stdout
    as_json = ladder(tmp_path, "log", folder, "--json")
    assert [json.loads(line)["time"] for line in as_json.stdout.splitlines()] == [e["time"] for e in entries]
    # manifest.json records each example's content digest beside its id, for `ladder compare`.
    exp = load_experiment(path, ["subsample.n=20"])
    task = {e.id: e for e in load_task(exp.config.task, exp.base_dir, exp.config.seed, "x").examples("test")}
    sub = read_json(folder / "manifest.json")["subsample"]
    assert sub["content"] == [task[i].content[:16] for i in sub["ids"]]
    missing = ladder(tmp_path, "log", tmp_path)
    assert missing.returncode == 2 and "no research log" in missing.stderr
