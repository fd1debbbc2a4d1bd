"""Flat JSONL read without `datasets` must give exactly the rows `datasets` gives, and hand every
other file to `datasets`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ladder.tasks.plain_jsonl import read_file
from tests.conftest import REPO


def via_datasets(path):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("json", data_files=str(path), cache_dir=str(path.parent / "hf"))["train"].to_list()


@pytest.mark.parametrize("lines", [
    ['{"text": "a", "label": "positive"}', '{"text": "é 🙂", "label": "negative"}'],
    ['{"id": 3, "x": 1.5, "ok": true, "t": "a"}', '{"t": "b", "ok": false, "x": 2.0, "id": -4}'],  # key order differs
    ['{"text": "a", "label": null}', '{"text": null, "label": "b"}'],
])
def test_same_rows_as_datasets(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_file(path)
    want = via_datasets(path)
    assert rows == want and [list(r) for r in rows] == [list(r) for r in want]
    assert all(type(a[k]) is type(b[k]) for a, b in zip(rows, want) for k in a)


@pytest.mark.parametrize("text", [
    '{"x": 1}\n{"x": 1.5}\n',          # pyarrow would make both floats
    '{"x": 1}\n{"y": 2}\n',            # different keys
    '{"x": [1, 2]}\n',                 # nested
    '{"x": 1}\n\n{"x": 2}\n',          # blank line
    '{"x": NaN}\n',                    # not JSON for pyarrow
    '{"x": 1, "x": 2}\n',              # duplicate key
    '[1, 2]\n',                        # not an object
    '{"x": "a"\n',                     # broken JSON
    '',                                # empty
])
def test_anything_else_goes_to_datasets(tmp_path, text):
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    assert read_file(path) is None


def test_invalid_utf8_goes_to_datasets(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"x": "caf\xe9"}\n')
    assert read_file(path) is None


def test_a_run_on_flat_jsonl_does_not_import_datasets(tmp_path):
    from tests.conftest import experiment

    config = experiment(tmp_path, "ladder-tiny", stages=[{"type": "zero_shot"}])
    code = ("import sys\nfrom ladder.config import load_experiment\nfrom ladder.runner import prepare\n"
            f"plan = prepare(load_experiment({str(config)!r}))\nassert plan.examples\n"
            "print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
