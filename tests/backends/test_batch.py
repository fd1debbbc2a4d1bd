"""model.batch: true — OpenAI's Batch API and Anthropic's Message Batches, through the real SDKs over
HTTP against ladder/testing/fake_api.py, counted on the server side."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from ladder.backends.base import CallStats, generate
from ladder.backends.batch import price_factor
from ladder.cache import Cache
from ladder.config import GenerationConfig, load_experiment
from ladder.errors import BackendError
from ladder.registry import BACKENDS
from ladder.runner import estimate_run as check
from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import ENV, KEY, KEY_ENV, ServerProcess, api_experiment, leaks

BACKEND_NAMES = ["openai", "anthropic"]
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def make(name: str, srv, **kw):
    cls = BACKENDS.get(name)
    return cls(cls.Config(name=MODEL[name], base_url=srv.base_url, api_key_env=KEY_ENV, backoff=0.01,
                          batch_poll_interval=0.05, **kw))


def prompts(n: int) -> list[list[Message]]:
    return [[Message("system", "Answer briefly."), Message("user", f"question number {i}")] for i in range(n)]


def entries(cache: Cache) -> dict[str, dict]:
    rows = cache._db.execute("SELECT key, value FROM calls").fetchall()
    return {k: json.loads(v) for k, v in rows}


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_batch_gives_the_normal_paths_samples_in_the_same_cache_entries_at_half_price(tmp_path, name):
    gen = GenerationConfig(n=3, temperature=1.0, max_tokens=8, seed=7)
    with FakeAPIServer() as srv:
        srv.configure(batch_seconds=0.3)  # polled a few times before it ends
        batched = Cache(tmp_path / "batched")
        stats = CallStats()
        out = generate(make(name, srv, batch=True, batch_max_requests=4), batched, prompts(10), gen, stats)
        counters = srv.app.batches.counters()
        # 10 prompts × 3 samples: 10 OpenAI requests (n=3) or 30 Anthropic ones, in jobs of at most 4.
        requests = 10 if name == "openai" else 30
        assert counters["lines_submitted"][name] == requests
        assert counters["jobs_created"][name] == -(-requests // 4)
        polls = counters["calls"]["GET /batches/{id}" if name == "openai" else "GET /messages/batches/{id}"]
        assert polls > counters["jobs_created"][name]  # waited: at least one poll found a job running
        assert stats.generated == 30 and stats.errors == 0

        plain = Cache(tmp_path / "plain")
        normal = generate(make(name, srv), plain, prompts(10), gen, CallStats())
        # The same cache keys (batch is not part of them) and the same samples, at half the price.
        a, b = entries(batched), entries(plain)
        assert a.keys() == b.keys() and len(a) == 30
        for key in a:
            assert {k: v for k, v in a[key].items() if k != "cost"} == {k: v for k, v in b[key].items() if k != "cost"}
            assert a[key]["cost"] == pytest.approx(0.5 * b[key]["cost"]) and b[key]["cost"] > 0
        assert [[s.text for s in row] for row in out] == [[s.text for s in row] for row in normal]

        # A later run without batch is answered from what the batch run cached: nothing is sent.
        srv.reset()
        again = CallStats()
        generate(make(name, srv), batched, prompts(10), gen, again)
        assert again.cached == 30 and srv.stats()["requests"] == 0
    # Every collected job's ledger is kept under batches/done, none left pending.
    assert not list((tmp_path / "batched" / "batches").glob("*.json"))
    assert len(list((tmp_path / "batched" / "batches" / "done").glob("*.json"))) == counters["jobs_created"][name]


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("fault", ["batch_expire", "batch_line_errors"])
def test_failed_or_expired_lines_are_errors_and_a_rerun_resubmits_only_them(tmp_path, name, fault):
    gen = GenerationConfig(n=1, temperature=0.0, max_tokens=8)
    cache = Cache(tmp_path / "cache")
    with FakeAPIServer() as srv:
        srv.configure(**{fault: 0.3})
        first = CallStats()
        out = generate(make(name, srv, batch=True), cache, prompts(30), gen, first)
        errors = [row[0] for row in out if row[0].finish_reason == "error"]
        assert 0 < len(errors) < 30 and first.errors == len(errors) and first.generated == 30 - len(errors)
        word = "expired" if fault == "batch_expire" else ("500" if name == "openai" else "api_error")
        assert all(word in e.error for e in errors), errors[0].error
        assert len(cache) == 30 - len(errors)  # the finished lines are kept, the failed ones not cached
        if fault == "batch_expire" and name == "openai":
            assert srv.app.batches.jobs[next(iter(srv.app.batches.jobs))]["status"] == "expired"

        srv.configure(**{fault: 0.0})
        second = CallStats()
        again = generate(make(name, srv, batch=True), cache, prompts(30), gen, second)
        stats, counters = srv.stats(), srv.app.batches.counters()
    assert second.cached == 30 - len(errors) and second.generated == len(errors) and second.errors == 0
    assert counters["jobs_created"][name] == 2 and counters["lines_submitted"][name] == 30 + len(errors)
    assert stats["requests_after_success"] == 0 and stats["unique_succeeded"] == 30
    assert all(row[0].finish_reason != "error" for row in again)


def test_batch_price_in_samples_and_in_check_both_prices(tmp_path):
    with FakeAPIServer() as srv:
        backend = make("openai", srv, batch=True)
        (row,) = generate(backend, Cache(tmp_path / "c"), prompts(1), GenerationConfig(max_tokens=8), CallStats())
        s = row[0]
        # gpt-4o-mini: $0.15 / $0.60 per 1M tokens, half of it through the batch API.
        assert s.cost > 0 and s.cost == pytest.approx(0.5 * (s.prompt_tokens * 0.15 + s.completion_tokens * 0.60) / 1e6)
        assert price_factor(backend) == 0.5 and price_factor(make("anthropic", srv)) == 0.5

    for batch in (False, True):
        path = api_experiment(tmp_path, "anthropic", "http://127.0.0.1:9", model={"batch": batch})
        (stage,) = check(load_experiment(path))["stages"]
        assert stage["cost_usd_standard"] > 0
        assert stage["cost_usd_batch"] == pytest.approx(0.5 * stage["cost_usd_standard"])
        assert stage["cost_usd"] == stage["cost_usd_batch" if batch else "cost_usd_standard"]
        assert stage["batch"] is batch
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "check", str(path), "--offline"], env=ENV, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "batch cost $" in out.stdout and f"{stage['cost_usd_batch']:.4f}*" in out.stdout
    assert f"{stage['cost_usd_standard']:.4f}" in out.stdout


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_sigkilled_batch_run_resumes_the_same_jobs_with_no_duplicate_request(tmp_path, name):
    # Jobs run for a minute: the client is killed while it polls them, after all 3 were created.
    with ServerProcess(tmp_path, "--batch-seconds", "60") as srv:
        path = api_experiment(tmp_path, name, srv.base_url,
                              model={"batch": True, "batch_poll_interval": 0.1, "batch_max_requests": 15})
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        cmd = [sys.executable, "-m", "ladder.cli", "run", str(path)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ledger = tmp_path / "cache" / "batches"
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            recorded = [f for f in ledger.glob("*.json") if "job_id" in f.read_text()]
            if len(recorded) == 3:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # polling now
        proc.send_signal(signal.SIGKILL)
        first_out, first_err = proc.communicate()
        at_kill = srv.stats()
        assert at_kill["batch"]["jobs_created"][name] == 3 and at_kill["successes"] == 0, first_err

        srv.configure(batch_seconds=0)
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        stats = srv.stats()
    # The 3 recorded jobs were collected; no new job, no line sent twice, every example answered once.
    assert stats["batch"]["jobs_created"][name] == 3 and stats["batch"]["lines_submitted"][name] == 40
    assert stats["unique_succeeded"] == 40 and stats["requests_after_success"] == 0 and stats["requests"] == 40
    assert done.stderr.count("resuming") == 3
    rows = [r for r in read_jsonl(next((tmp_path / "results/t/zero_shot").iterdir()) / "samples.jsonl")
            if not r["error"]]
    assert len({r["id"] for r in rows}) == 40 and len(rows) == 40
    assert len(Cache(tmp_path / "cache")) == 40
    assert leaks(tmp_path / "results", tmp_path / "cache", first_out.decode(), first_err.decode(),
                 done.stdout, done.stderr) == []


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_server_without_a_batch_api_is_a_clear_error_and_leaves_no_job_recorded(tmp_path, name):
    with FakeAPIServer() as srv:
        cls = BACKENDS.get(name)
        backend = cls(cls.Config(name=MODEL[name], base_url=srv.base_url + "/no-batch-here", api_key_env=KEY_ENV,
                                 batch=True))
        with pytest.raises(BackendError) as err:
            generate(backend, Cache(tmp_path / "c"), prompts(2), GenerationConfig(max_tokens=8), CallStats())
    text = str(err.value)
    assert "batch API" in text and "HTTP 404" in text and "batch: false" in err.value.fix and KEY not in text
    assert not [f for f in (tmp_path / "c" / "batches").glob("*.json") if "job_id" in f.read_text()]


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_job_the_restarted_server_no_longer_knows_is_resubmitted_once_and_the_stage_ends(tmp_path, name):
    # Today: the 404 on polling became a BackendError before the lost-job branch, so every re-run
    # exited 2 ("polling batch … answered HTTP 404") and the stage could never finish.
    env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
    ledger = tmp_path / "cache" / "batches"
    with ServerProcess(tmp_path, "--batch-seconds", "60") as srv:
        path = api_experiment(tmp_path, name, srv.base_url,
                              model={"batch": True, "batch_poll_interval": 0.1, "batch_max_requests": 15})
        cmd = [sys.executable, "-m", "ladder.cli", "run", str(path)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if len([f for f in ledger.glob("*.json") if "job_id" in f.read_text()]) == 3:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        port = srv.base_url.rsplit(":", 1)[1]
    (tmp_path / "port").unlink()
    # The same address, a fresh server: it has never heard of the three recorded jobs.
    with ServerProcess(tmp_path, "--port", port) as srv:
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        stats = srv.stats()
    assert done.returncode == 0, done.stderr
    assert "no longer knows" in done.stderr and "resubmitting their 40 requests once" in done.stderr
    assert stats["batch"]["jobs_created"][name] == 3 and stats["batch"]["lines_submitted"][name] == 40
    assert stats["unique_succeeded"] == 40 and stats["requests_after_success"] == 0
    rows = read_jsonl(next((tmp_path / "results/t/zero_shot").iterdir()) / "samples.jsonl")
    assert len(rows) == 40 and not [r for r in rows if r["error"]]
    # Recorded: the lost jobs' ledgers say so, and the new jobs name the ones they replace.
    records = [json.loads(f.read_text()) for f in (ledger / "done").glob("*.json")]
    lost = [r for r in records if r["status"].startswith("gone")]
    again = [r for r in records if r.get("resubmit_of")]
    assert len(lost) == 3 and len(again) == 3
    assert sorted(j for r in again for j in r["resubmit_of"]) == sorted(r["job_id"] for r in lost)
    assert sorted(c for r in again for c in r["custom_ids"]) == sorted(c for r in lost for c in r["custom_ids"])
    assert not list(ledger.glob("*.json"))

