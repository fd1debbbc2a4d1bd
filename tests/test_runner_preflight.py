"""Nothing half-written for errors only a run can meet: a cache that cannot be written, or a key
the server rejects, stop `ladder run` (exit 2, one paragraph) before its results folder is
touched; a re-run of a finished experiment needs neither the server nor a network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.testing.fake_api import FakeAPIServer
from tests.backends.api_support import ENV, KEY, KEY_ENV, api_experiment, leaks, sentiment
from tests.test_bad_inputs import changes, snapshot


def run(folder: Path, base_url: str, *, backend: str = "openai", cache: Path | None = None,
        **overrides) -> subprocess.CompletedProcess:
    path = api_experiment(folder, backend, base_url, **overrides)
    env = {**ENV, "LADDER_CACHE_DIR": str(cache or folder / "cache")}
    return subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=120)


def failed_cleanly(done: subprocess.CompletedProcess, *expected: str) -> str:
    text = done.stdout + done.stderr
    flat = " ".join(text.split())
    assert done.returncode == 2 and "Traceback" not in text, text
    assert flat.count("error:") == 1, text
    for part in expected:
        assert part in flat, f"missing {part!r} in {flat}"
    return flat


@pytest.fixture
def read_only(tmp_path):
    """A read-only folder: a read-only tmpfs mount as root (root writes through file modes),
    mode 0555 otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_cache_dir_that_is_a_file_stops_the_run_before_the_results_folder(tmp_path):
    (tmp_path / "not_a_folder").write_text("x")
    with FakeAPIServer(responder=sentiment) as srv:
        done = run(tmp_path, srv.base_url, cache_dir=str(tmp_path / "not_a_folder"))
        assert srv.stats()["requests"] == 0
    failed_cleanly(done, f"{tmp_path / 'not_a_folder'}: the model-call cache folder is a file, not a folder",
                   "Fix: set cache_dir")
    assert not (tmp_path / "results").exists()


def test_a_read_only_cache_stops_the_run_before_the_results_folder(tmp_path, read_only):
    with FakeAPIServer(responder=sentiment) as srv:
        done = run(tmp_path, srv.base_url, cache=read_only / "cache")
        assert srv.stats()["requests"] == 0
    failed_cleanly(done, str(read_only / "cache"), "cannot open the model-call cache",
                   "Fix: set cache_dir in the YAML (or LADDER_CACHE_DIR) to a writable folder")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_rejected_key_stops_the_run_before_the_results_folder_is_touched(tmp_path, backend):
    with FakeAPIServer(responder=sentiment, api_key=KEY) as srv:
        assert run(tmp_path, srv.base_url, backend=backend).returncode == 0  # a finished stage
        before = snapshot(tmp_path / "results")
        srv.configure(api_key="sk-another-key-for-this-server-000")  # the key was revoked
        srv.reset()
        done = run(tmp_path, srv.base_url, backend=backend,
                   stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 2}])
        stats = srv.stats()
    flat = failed_cleanly(done, "HTTP 401", "the API key was rejected", f"${KEY_ENV}")
    assert stats["requests"] == 0  # only the free model-list request was sent, no completion
    assert changes(before, snapshot(tmp_path / "results")) == []  # not one byte changed, no .lock left
    assert leaks(tmp_path, flat) == []


def test_a_finished_experiment_reruns_without_the_server(tmp_path):
    with FakeAPIServer(responder=sentiment) as srv:
        url = srv.base_url
        assert run(tmp_path, url).returncode == 0
    done = run(tmp_path, url)  # the server is gone: the results answer everything, nothing is sent
    assert done.returncode == 0, done.stderr
    assert "0 new generations" in " ".join(done.stderr.split())


def test_a_stage_that_fails_before_its_first_example_leaves_no_folder(tmp_path):
    # A base_url whose model list proves nothing (404) but whose completions 404 too: the stage
    # stops at its first request, after its folder was made.
    with FakeAPIServer(responder=sentiment) as srv:
        assert run(tmp_path, srv.base_url).returncode == 0  # zero_shot, finished
        done = run(tmp_path, srv.base_url + "/nowhere/v1")
    failed_cleanly(done, "HTTP 404", "the model or endpoint does not exist")
    stages = sorted(p.relative_to(tmp_path / "results/t") for p in (tmp_path / "results/t").glob("*/*"))
    assert len(stages) == 1 and (tmp_path / "results/t" / stages[0] / "metrics.json").exists()
