"""What a run id is made of, by content: the code that scores, and a local model's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

import ladder.digests as digests
from ladder.backends.hf import BUILTIN_MODELS, HFBackend, HFConfig
from ladder.config import load_experiment
from ladder.runner import prepare, run_experiment
from ladder.store import read_jsonl
from tests.conftest import REPO, experiment

ORACLE = {"backend": "tests.test_climb:Oracle", "name": "oracle"}
METRIC_V1 = "def score(ex, completion):\n    return 1.0\n"
METRIC_V2 = "def score(ex, completion):\n    return 0.5\n"


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def value(folder):
    (row,) = [r for r in json.loads((folder / "manifest.json").read_text())["stages"]]
    (metrics,) = (folder / "zero_shot").glob("*/metrics.json")
    return row["run_id"], json.loads(metrics.read_text())["metric"]["value"]


def test_an_edited_python_metric_rescores_instead_of_reusing(tmp_path):
    """The python metric's file is in the run id: editing the function between two CLI runs gives
    the fresh value in a new folder, never "done earlier" with the old one."""
    path = experiment(tmp_path, "unused", model=ORACLE, metric={"type": "python", "function": "mymetric:score"})
    (tmp_path / "mymetric.py").write_text(METRIC_V1)
    first = cli("run", path, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run1,) = (tmp_path / "results/t/zero_shot").iterdir()
    v1 = json.loads((run1 / "metrics.json").read_text())["metric"]["value"]
    assert v1 == 1.0

    (tmp_path / "mymetric.py").write_text(METRIC_V2)
    second = cli("run", path, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "done earlier" not in second.stderr
    (run2,) = set((tmp_path / "results/t/zero_shot").iterdir()) - {run1}
    assert json.loads((run2 / "metrics.json").read_text())["metric"]["value"] == pytest.approx(0.5)
    assert "score = 0.500" in " ".join(second.stderr.split())
    # Back to the first version: its own finished folder is found again.
    (tmp_path / "mymetric.py").write_text(METRIC_V1)
    third = cli("run", path, cwd=tmp_path)
    assert "done earlier" in third.stderr and str(run1.name) in third.stderr


def test_ladders_own_metric_source_is_in_the_run_id(tmp_path, monkeypatch):
    """A built-in metric (choice) is identified by its source too: an edit to choice.py (here: the
    digest its file gets) gives every stage scored by it a new run id; another module does not."""
    path = experiment(tmp_path, "unused", model=ORACLE)
    exp = load_experiment(path)
    stage = exp.stages[0]
    before = prepare(exp).resolve(stage).run_id
    import ladder.metrics.choice as choice

    real = digests.file_digest

    def edited(p):
        return lambda f: "edited" if os.path.samefile(f, p) else real(f)

    monkeypatch.setattr(digests, "file_digest", edited(choice.__file__))
    assert prepare(exp).resolve(stage).run_id != before
    import ladder.metrics.numeric as numeric

    monkeypatch.setattr(digests, "file_digest", edited(numeric.__file__))
    assert prepare(exp).resolve(stage).run_id == before


def test_a_python_scorer_file_is_in_the_stage_run_id(tmp_path):
    (tmp_path / "myscorer.py").write_text("def fn(ex, c):\n    return 1.0\n")
    sys.path.insert(0, str(tmp_path))
    try:
        stages = [{"type": "best_of_n", "n": 2, "scorer": {"type": "python", "function": "myscorer:fn"}}]
        exp = load_experiment(experiment(tmp_path, "unused", model=ORACLE, stages=stages))
        before = prepare(exp).resolve(exp.stages[0]).run_id
        time.sleep(0.01)
        (tmp_path / "myscorer.py").write_text("def fn(ex, c):\n    return 0.0\n")
        assert prepare(exp).resolve(exp.stages[0]).run_id != before
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("myscorer", None)


def test_resume_without_metrics_json_rescores_from_the_cache(tmp_path):
    """A run that never wrote metrics.json left scores nothing vouches for: a re-run scores every
    example again, its generations from the model-call cache, not the scores in samples.jsonl."""
    path = experiment(tmp_path, "unused", model=ORACLE, stages=[{"type": "few_shot", "k": 2}])
    (first,) = run_experiment(load_experiment(path))
    run_dir = tmp_path / "results/t/few_shot" / first.run_id
    (run_dir / "metrics.json").unlink()
    rows = read_jsonl(run_dir / "samples.jsonl")
    for r in rows:  # scores an older metric (or a hand edit) gave
        r["score"] = 0.0
        for s in r["samples"]:
            s["score"] = 0.0
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (again,) = run_experiment(load_experiment(path))
    assert again.run_id == first.run_id and again.metric == first.metric and first.metric.value > 0.5
    assert again.stats.generated_samples == 0 and again.stats.cached_samples == 40
    assert len(read_jsonl(run_dir / "samples.jsonl")) == 40 and (run_dir / "samples.jsonl.unfinished").exists()


# -- local models by content ------------------------------------------------------------------

def fingerprint(folder) -> str:
    return HFBackend(HFConfig(name=str(folder))).fingerprint


def test_the_same_model_files_elsewhere_have_the_same_fingerprint(tmp_path):
    """Another clone of ladder-tiny (other mtimes, other folder, a nested file in both) is the
    same model: its cached generations and results are reused."""
    src = BUILTIN_MODELS["ladder-tiny"]
    a, b = tmp_path / "a", tmp_path / "clone" / "b"
    shutil.copytree(src, a)
    shutil.copytree(src, b)
    for f in b.iterdir():
        os.utime(f, (1_000_000_000, 1_000_000_000))
    assert fingerprint(a) == fingerprint(b) == HFBackend(HFConfig(name="ladder-tiny")).fingerprint
    for folder in (a, b):
        (folder / "extra").mkdir()
        (folder / "extra" / "notes.txt").write_text("same")
    assert fingerprint(a) == fingerprint(b)
    (b / "extra" / "notes.txt").write_text("diff")  # a nested file is part of the model
    assert fingerprint(a) != fingerprint(b)


def test_a_same_size_same_mtime_replacement_is_another_model(tmp_path):
    """model.safetensors swapped for other bytes of the same size, mtime set back with `touch -d`:
    a new fingerprint, in this process (memo) and in a fresh one (on-disk memo)."""
    folder = tmp_path / "m"
    shutil.copytree(BUILTIN_MODELS["ladder-tiny"], folder)
    weights = folder / "model.safetensors"
    st = weights.stat()
    before = fingerprint(folder)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor
    time.sleep(0.02)  # file times tick at the kernel's clock (a few ms)
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
    assert fingerprint(folder) != before
    code = ("from ladder.backends.hf import HFBackend, HFConfig; import sys\n"
            f"print(HFBackend(HFConfig(name=sys.argv[1])).fingerprint)")
    fresh = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert fresh.stdout.strip() == fingerprint(folder)


def test_digests_are_memoised_on_disk(tmp_path, monkeypatch):
    """The second process does not read a large file again: its digest comes from the memo."""
    (tmp_path / "cache").mkdir()  # the memo lives beside the model-call cache, once there is one
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(digests.ON_DISK_FROM + 10))
    first = digests.file_digest(big)
    digests._MEMO.clear()
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: (opened.append(f), real_open(f, *a, **k))[1])
    assert digests.file_digest(big) == first and big not in opened


def test_a_scorers_local_model_is_in_the_run_id_by_content(tmp_path):
    """A classifier (or PM) folder retrained in place: the best_of_n stage it selects for gets a
    new run id, as the policy model's own folder would."""
    clf = tmp_path / "clf"
    clf.mkdir()
    (clf / "config.json").write_text("{}")
    (clf / "model.safetensors").write_bytes(b"one")
    stages = [{"type": "best_of_n", "n": 2, "scorer": {"type": "classifier", "model": str(clf), "label": "positive"}}]
    exp = load_experiment(experiment(tmp_path, "unused", model=ORACLE, stages=stages))
    before = prepare(exp).resolve(exp.stages[0]).run_id
    time.sleep(0.02)
    (clf / "model.safetensors").write_bytes(b"two")
    assert prepare(exp).resolve(exp.stages[0]).run_id != before


def test_the_memo_never_makes_the_cache_folder(tmp_path):
    """A run that stops on bad input writes nothing: hashing a model must not create the cache."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (digests.ON_DISK_FROM + 1))
    digests.file_digest(big)
    assert not (tmp_path / "cache").exists()


def test_a_further_metrics_python_file_is_in_the_run_id(tmp_path, monkeypatch):
    """`metrics:` columns are scored by code too: editing a further metric's file gives a new run id."""
    (tmp_path / "extra_metric.py").write_text(METRIC_V1)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = experiment(tmp_path, "unused", model=ORACLE)
    cfg = yaml.safe_load(path.read_text())
    cfg["metrics"] = {"acc": "choice", "extra": {"type": "python", "function": "extra_metric:score"}}
    cfg.pop("metric", None)
    path.write_text(yaml.safe_dump(cfg))
    exp = load_experiment(path)
    before = prepare(exp).resolve(exp.stages[0]).run_id
    real = digests.file_digest
    edited = str(tmp_path / "extra_metric.py")
    monkeypatch.setattr(digests, "file_digest", lambda f: "edited" if os.path.samefile(f, edited) else real(f))
    digests_cache_clear = getattr(digests.code_digest, "cache_clear", None)
    if digests_cache_clear:
        digests_cache_clear()
    assert prepare(exp).resolve(exp.stages[0]).run_id != before
