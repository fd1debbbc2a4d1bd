"""The command line as a user runs it: start-up cost, error messages and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, experiment

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def ladder(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**ENV, **(env or {})}, timeout=300)


def test_cli_subprocesses_use_the_tests_own_cache(tmp_path):
    """A `ladder` subprocess writes to this test's cache, not ~/.cache/ladder shared by every test."""
    out = subprocess.run([sys.executable, "-c", "from ladder.cache import default_cache_dir as d; print(d())"],
                         capture_output=True, text=True, env=ENV, check=True)
    assert out.stdout.strip() == str(tmp_path / "cache")


def test_import_and_help_do_not_load_torch():
    code = ("import sys, ladder, ladder.cli, ladder.config, ladder.runner, ladder.registry\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'openai', 'anthropic') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys\nsys.argv = ['ladder', '--help']\nimport ladder.cli\n"
            "try:\n    ladder.cli.main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "check" in out.stdout and "compare" in out.stdout


@pytest.mark.parametrize("mutate,needle", [
    (lambda p: p.write_text("name: x\ntask: [oops\n"), "malformed YAML"),
    (lambda p: p.write_text(p.read_text().replace("type: zero_shot", "type: zero_shoot")), "unknown stage type"),
    (lambda p: p.write_text(p.read_text().replace("target: label", "target: gold")), "names column 'gold'"),
    (lambda p: p.write_text(p.read_text().replace("Review: {text}", "Review: {body}")), "names column 'body'"),
    (lambda p: (p.parent / "data/test.jsonl").write_text(""), "empty"),
    (lambda p: p.write_text(p.read_text() + "metric: {type: bleu}\n"), "unknown metric type 'bleu'"),
])
def test_bad_input_exits_2_with_one_paragraph_and_writes_nothing(tmp_path, random_model, mutate, needle):
    path = experiment(tmp_path, random_model)
    mutate(path)
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "exp.yaml" in out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    assert not (tmp_path / "results").exists()


def test_check_prints_the_plan_without_generating(tmp_path, random_model):
    path = experiment(tmp_path, random_model, stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 3}])
    out = ladder("check", path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "zero_shot" in out.stdout and "few_shot" in out.stdout and "prompt tokens" in out.stdout
    assert "too few for clean trends" in out.stdout
    # The MDE the planned n gives, under the stated assumption (sd 0.5 of per-example differences).
    import re

    from ladder.power import mde
    n, shown = re.search(r"power: with n=(\d+) paired examples, two rungs must differ by ±([\d.]+)", out.stdout).groups()
    assert shown == f"{mde(0.5, int(n)):.3f}" and "sd 0.5" in out.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_run_then_compare(tmp_path, random_model):
    path = experiment(tmp_path, random_model)
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "zero_shot" in out.stdout and "value [95% CI]" in out.stdout
    again = ladder("compare", tmp_path / "results" / "t")
    assert again.returncode == 0 and "zero_shot" in again.stdout
    missing = ladder("compare", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no summary.csv" in missing.stderr


def test_unwritable_results_dir_is_a_clear_error(tmp_path, random_model):
    if os.geteuid() == 0:
        target = "/proc/ladder-results"  # root ignores permissions; /proc refuses everyone
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "results"
    path = experiment(tmp_path, random_model, results_dir=str(target))
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr


def test_zero_one_labels_with_the_readmes_target_map(tmp_path, random_model):
    # The README's own `target_map: {0: negative, 1: positive}`, on 0/1-labelled data, written as
    # YAML text so that its keys are the numbers YAML makes of them.
    import json

    path = experiment(tmp_path, random_model, n_test=8)
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (tmp_path / "data" / f"{split}.jsonl").read_text().splitlines()]
        (tmp_path / "data" / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": r["text"], "label": int(r["label"] == "positive")}) + "\n" for r in rows))
    text = path.read_text().replace("  choices:\n  - positive\n  - negative\n  - neutral\n",
                                    "  choices: [negative, positive]\n  target_map: {0: negative, 1: positive}\n")
    assert "target_map: {0: negative" in text
    path.write_text(text)
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (samples,) = (tmp_path / "results" / "t" / "zero_shot").glob("*/samples.jsonl")
    targets = [json.loads(line)["target"] for line in samples.read_text().splitlines()]
    expected = [("negative", "positive")[json.loads(line)["label"]]
                for line in (tmp_path / "data" / "test.jsonl").read_text().splitlines()]
    assert sorted(targets) == sorted(expected) and set(targets) == {"negative", "positive"}


def test_check_table_at_80_columns_keeps_stage_names_whole(tmp_path, random_model):
    """few_shot and few_shot_max must stay distinguishable on an 80-column terminal (they were both
    cut to `few_sh…`); the table fits 80 columns."""
    path = experiment(tmp_path, random_model, stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 2},
                                                      {"type": "few_shot", "name": "few_shot_max", "k": 4},
                                                      {"type": "best_of_n", "n": 2}])
    out = ladder("check", path, cwd=tmp_path, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.lstrip().startswith(("zero_shot", "few_shot", "best_of"))]
    names = [line.split()[0] for line in table]
    assert names == ["zero_shot", "few_shot", "few_shot_max", "best_of_n"], out.stdout
    assert all(len(line) <= 80 for line in out.stdout.splitlines()[:12]), out.stdout
