"""The model-call cache under faults: a damaged database is moved aside and the run goes on with
right results; a full disk is the clear exit-2 error, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.cache import Cache
from ladder.errors import LadderError
from ladder.testing.fake_api import FakeAPIServer
from tests.backends.api_support import ENV, KEY, KEY_ENV, api_experiment, outcome, sentiment
from tests.test_store import fill, small_disk  # noqa: F401 - a fixture

PAGE = 4096


def damage(db: Path, first_page: int, pages: int = 3) -> None:
    """Overwrite whole pages of an SQLite file with junk, as a failing disk would."""
    with open(db, "r+b") as f:
        f.seek(first_page * PAGE)
        f.write(bytes(range(256)) * (PAGE * pages // 256))


def filled(folder: Path, n: int = 200) -> Cache:
    cache = Cache(folder)
    cache.put_many({f"k{i}": {"text": "x" * 100, "i": i} for i in range(n)})
    return cache


@pytest.mark.parametrize("first_page", [0, 1])  # the header page, or pages of the table
def test_a_damaged_database_is_moved_aside_with_a_warning(tmp_path, capsys, first_page):
    filled(tmp_path).close()
    damage(tmp_path / "calls.sqlite", first_page)
    cache = Cache(tmp_path)
    cache.check_writable()
    assert cache.get_many([f"k{i}" for i in range(200)]) == {}  # a fresh cache: recomputed, never wrong
    cache.put_many({"new": 1})
    assert cache.get_many(["new"]) == {"new": 1} and len(cache) == 1
    (aside,) = tmp_path.glob("calls.sqlite.corrupt-*")
    said = " ".join(capsys.readouterr().err.split())
    assert f"moved it to {aside}" in said and "Results stay right" in said
    assert aside.stat().st_size > 200 * 100  # kept for salvage, not deleted


def test_a_full_database_is_the_disk_full_error_not_a_rollback_error(tmp_path):
    cache = filled(tmp_path, 10)
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "database or disk is full"
    with pytest.raises(LadderError) as e:
        cache.put_many({f"big{i}": "y" * 10_000 for i in range(50)})
    msg = e.value.render()
    assert "the disk (or your quota) is full" in msg and "no transaction is active" not in msg
    assert str(tmp_path / "calls.sqlite") in msg and "LADDER_CACHE_DIR" in msg
    assert len(cache) == 10  # the failed write took nothing with it
    cache.put_many({"small": 1})  # and the cache still works once there is room
    assert cache.get_many(["small"]) == {"small": 1}


def run(folder: Path, base_url: str, cache: Path, *args: str) -> subprocess.CompletedProcess:
    path = api_experiment(folder, "openai", base_url)
    return subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path), *args],
                          env={**ENV, "LADDER_CACHE_DIR": str(cache)}, cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_a_run_on_a_damaged_cache_moves_it_aside_and_gets_the_right_numbers(tmp_path):
    two_stages = "stages=[{type: zero_shot}, {type: few_shot, k: 2}]"
    with FakeAPIServer(responder=sentiment) as srv:
        assert run(tmp_path, srv.base_url, tmp_path / "cache").returncode == 0
        damage(tmp_path / "cache/calls.sqlite", 1)
        done = run(tmp_path, srv.base_url, tmp_path / "cache", "--set", two_stages)
        reference = run(tmp_path / "ref", srv.base_url, tmp_path / "ref/cache", "--set", two_stages)
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and "Traceback" not in text, text
    (aside,) = (tmp_path / "cache").glob("calls.sqlite.corrupt-*")
    assert f"moved it to {aside}" in text
    assert reference.returncode == 0, reference.stderr
    for stage in ("zero_shot", "few_shot"):
        assert outcome(tmp_path / "results/t", stage) == outcome(tmp_path / "ref/results/t", stage)
    runs = [p for p in (tmp_path / "results/t").glob("*/*") if p.is_dir()]
    assert len(runs) == 2 and all((p / "metrics.json").exists() for p in runs)  # no empty stage folder


@pytest.mark.parametrize("leave", [0, 64 * 1024])  # full from the start, or filling up mid-run
def test_a_full_disk_under_the_cache_is_a_clear_error(tmp_path, small_disk, monkeypatch, leave):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, KEY)
    cache = small_disk / "cache"
    with FakeAPIServer(responder=lambda req, i: "positive " * 400) as srv:  # long answers fill it fast
        if leave:
            Cache(cache).close()
        filler = fill(small_disk, leave)
        done = run(tmp_path, srv.base_url, cache, "--set", "generation.max_tokens=400")
    text = done.stdout + done.stderr
    flat = " ".join(text.split())
    assert done.returncode == 2 and "Traceback" not in text, text
    assert flat.count("error:") == 1 and "no transaction is active" not in flat
    assert f"error: {cache}/calls.sqlite: cannot" in flat and "the disk (or your quota) is full" in flat
    assert "free disk space" in flat
    if not leave:
        assert not (tmp_path / "results").exists()  # found before the results folder was touched
    else:  # found mid-stage: the examples answered before are on disk, to resume from
        assert list((tmp_path / "results/t/zero_shot").glob("*/samples.jsonl"))
    filler.unlink()


def test_caches_opened_while_others_write_never_report_a_locked_database(tmp_path):
    """Variants run in threads, each opening the cache while others commit: SQLite answers some
    of those opens 'database is locked' at once, without waiting out the busy timeout (seen in CI:
    one variant of four failed). Opening retries them."""
    import random
    import threading

    errors = []
    for trial in range(30):
        folder = tmp_path / str(trial)
        stop = threading.Event()

        def write():
            try:
                cache = Cache(folder)
                while not stop.is_set():
                    cache.put_many({str(random.random()): {"text": "y" * 1000} for _ in range(50)})
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        def open_and_close():
            for _ in range(40):
                try:
                    Cache(folder).close()
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)

        writers = [threading.Thread(target=write) for _ in range(3)]
        openers = [threading.Thread(target=open_and_close) for _ in range(6)]
        for t in writers + openers:
            t.start()
        for t in openers:
            t.join()
        stop.set()
        for t in writers:
            t.join()
    assert not errors, errors[:3]
