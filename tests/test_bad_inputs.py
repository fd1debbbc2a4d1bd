"""The bad-input corpus: experiments a user could write by mistake, each with the error it must give.

A case is a folder under tests/bad_inputs/:

  exp.yaml       the experiment (its first line says what is wrong with it)
  expected.txt   substrings the error must contain, one a line (file:line, field, the fix)
  args.txt       optional: more `ladder run` arguments, one a line (e.g. --set, --only)
  forbidden.txt  optional: substrings that must appear nowhere in the output (a pasted API key)
  make_data.py   optional: writes data too big to commit, run in the copy first
  ...            data files, or a finished results folder the failed run must leave alone

Each case runs the real command line (`python -m ladder.cli run exp.yaml`) in a copy of its
folder, next to a copy of the shared data in bad_inputs/_data, and must: exit with 2; print one
`error:` paragraph holding every expected line; show no traceback; and leave every file and
folder as it was — no results folder, no model-call cache, and a results folder that was already
there byte-identical. All cases fail before a model is loaded (one loads a tokenizer).
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "exp.yaml").exists())


def snapshot(*folders: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under the folders."""
    return {str(p): (p.read_bytes() if p.is_file() else None)
            for folder in folders for p in sorted(folder.rglob("*"))}


def changes(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    return ([f"new {p}" for p in after.keys() - before.keys()] + [f"gone {p}" for p in before.keys() - after.keys()]
            + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]])


def lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []


def test_the_corpus_is_complete():
    assert len(CASES) >= 20
    for name in CASES:
        assert lines(CORPUS / name / "expected.txt"), f"{name} has no expected.txt"
        assert (CORPUS / name / "exp.yaml").read_text(encoding="utf-8", errors="replace").startswith("# "), \
            f"{name}/exp.yaml should say on its first line what is wrong with it"


def run_case(root: Path, name: str) -> tuple[Path, dict[str, bytes | None], subprocess.CompletedProcess]:
    """Copy the case to root/<name> (beside root/_data), run `ladder run` there; the folder's
    contents before the run, and the finished process."""
    case = root / name
    shutil.copytree(CORPUS / name, case)
    shutil.copytree(CORPUS / "_data", root / "_data")
    if (case / "make_data.py").exists():
        runpy.run_path(str(case / "make_data.py"), run_name="__main__")
    before = snapshot(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "LADDER_CACHE_DIR": str(root / "cache"),
           "HF_DATASETS_CACHE": str(root / "hf_datasets")}  # the data loader's own cache: not in ~
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", "exp.yaml", *lines(case / "args.txt")],
                         cwd=case, env=env, capture_output=True, text=True, timeout=300)
    shutil.rmtree(root / "hf_datasets", ignore_errors=True)
    return case, before, out


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, Future]:
    """Every selected case, started at once on a pool as wide as the machine: the runs are
    independent processes that mostly import and parse, so the corpus takes about its CPU time
    divided by the cores instead of the sum of its start-ups."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_input"]
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        yield {name: pool.submit(run_case, tmp_path_factory.mktemp(name), name) for name in selected}
        pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("name", CASES)
def test_bad_input(runs, name):
    case, before, out = runs[name].result()
    text = out.stdout + out.stderr
    flat = " ".join(text.split())  # the console may wrap long lines
    assert out.returncode == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and flat.count("error:") == 1, text  # one paragraph, on one line
    for expected in lines(case / "expected.txt"):
        assert " ".join(expected.split()) in flat, f"missing {expected!r} in:\n{text}"
    for forbidden in lines(case / "forbidden.txt"):
        assert forbidden not in text and forbidden not in flat.replace(" ", ""), f"{forbidden!r} printed:\n{text}"
    # Nothing half-written: no new file or folder anywhere (results, cache), none changed.
    assert changes(before, snapshot(case.parent)) == []
