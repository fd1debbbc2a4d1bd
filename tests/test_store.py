"""The results store under a full disk: a clear error (exit 2, the path, "full"), every file
written before intact, and a re-run after freeing space that ends like an uninterrupted run.

The end-to-end tests mount a small tmpfs (root only; skipped where mounting is not allowed); the
unit tests inject ENOSPC in-process and run everywhere."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.errors import LadderError
from ladder.store import JsonlWriter, atomic_write, read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from tests.backends.api_support import ENV, KEY, KEY_ENV, api_experiment, outcome, sentiment

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write(path, "old\n")

    def fsync(fd):
        raise FULL

    monkeypatch.setattr("ladder.store.os.fsync", fsync)
    with pytest.raises(LadderError) as info:
        atomic_write(path, "new\n")
    msg = info.value.render()
    assert str(path) in msg and "the disk (or your quota) is full" in msg and "free disk space" in msg
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


class FullFile:
    """A file on a full disk: every write, flush and close fails."""

    def write(self, *args):
        raise FULL

    flush = close = write


def test_a_full_disk_mid_jsonl_is_the_write_error_not_a_traceback_from_close(tmp_path):
    writer = JsonlWriter(tmp_path / "samples.jsonl")
    writer._f.close()
    writer._f = FullFile()
    # Before: close() in __exit__ retried the flush, and its bare OSError replaced this error.
    with pytest.raises(LadderError, match="samples.jsonl: cannot write: the disk"):
        with writer:
            writer.write([{"id": "a"}])


def test_atomic_files_get_the_mode_of_plain_files(tmp_path):
    atomic_write(tmp_path / "a.json", "{}")
    (tmp_path / "b.json").write_text("{}")
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.json").stat().st_mode) and mode & stat.S_IRGRP


# ---------------------------------------------------------------------------------------------
# End to end, on a real full disk


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk, then free `leave` bytes of it again; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 0: the first write of the run (experiment.yaml) fails; 16 KiB: the run starts, and the new
# stage's samples.jsonl fills the disk part-way through its examples.
@pytest.mark.parametrize("leave", [0, 16 * 1024])
def test_a_full_results_disk(tmp_path, small_disk, monkeypatch, leave):
    monkeypatch.setenv(KEY_ENV, KEY)
    two_stages = "stages=[{type: zero_shot}, {type: few_shot, k: 2}]"
    with FakeAPIServer(responder=sentiment) as srv:
        def run(folder: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
            path = api_experiment(folder, "openai", srv.base_url, results_dir=str(results))
            env = {**ENV, "LADDER_CACHE_DIR": str(folder / "cache")}
            return subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path), *args], env=env,
                                  cwd=folder, capture_output=True, text=True, timeout=120)

        results = small_disk / "results"
        assert run(tmp_path, results).returncode == 0  # zero_shot, finished
        finished = files(results / "t")
        filler = fill(small_disk, leave)

        full = run(tmp_path, results, "--set", two_stages)  # adds few_shot: needs room
        text = full.stdout + full.stderr
        assert full.returncode == 2 and "Traceback" not in text, text
        error = " ".join(text[text.index("error:"):].split())
        assert f"error: {results}/t/" in error and "the disk (or your quota) is full" in error
        assert "free disk space" in error
        after = files(results / "t")
        kept = [k for k in finished if k.startswith("zero_shot/")]
        assert len(kept) == 3 and all(after[k] == finished[k] for k in kept)  # the finished stage: intact
        if leave == 0:
            assert after == finished  # the very first write failed: not one byte changed
        else:
            assert any(k.startswith("few_shot/") for k in after)  # it failed mid-stage
        assert not [k for k in after if k.endswith(".tmp")]  # no temp file of an atomic write left

        filler.unlink()  # space again: the same command finishes the job
        resumed = run(tmp_path, results, "--set", two_stages)
        assert resumed.returncode == 0, resumed.stderr
        reference = run(tmp_path / "ref", tmp_path / "ref/results", "--set", two_stages)
        assert reference.returncode == 0, reference.stderr
    for stage in ("zero_shot", "few_shot"):
        assert outcome(results / "t", stage) == outcome(tmp_path / "ref/results/t", stage)
    assert len(read_jsonl(next((results / "t/few_shot").iterdir()) / "samples.jsonl")) == 40
