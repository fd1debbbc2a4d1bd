"""Both API backends under failure: injected faults, Retry-After, a SIGKILLed run resuming —
counted on the server side, with the real SDK clients over real HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate

import pytest

from ladder.backends.api import _Tally, split
from ladder.backends.http import retry_after, scrub
from ladder.backends.base import generate
from ladder.cache import Cache
from ladder.config import GenerationConfig, load_experiment
from ladder.errors import BackendError
from ladder.registry import BACKENDS
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import (ENV, FAST, KEY, KEY_ENV, ServerProcess, api_experiment, leaks, outcome,
                                       sentiment)

BACKEND_NAMES = ["openai", "anthropic"]
# 20% of attempts fail, in every way the fake server can fail.
FAULTS = {"429": 0.05, "500": 0.05, "timeout": 0.03, "malformed": 0.04, "drop": 0.03}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def make(name: str, srv, **kw):
    cls = BACKENDS.get(name)
    return cls(cls.Config(name="m", base_url=srv.base_url, api_key_env=KEY_ENV, **{**FAST, **kw}))


def settled(srv) -> dict:
    """Server stats once every connection is answered or dropped (a held 'timeout' is counted when
    the client hangs up)."""
    deadline = time.time() + 5
    while (stats := srv.stats())["in_flight"] and time.time() < deadline:
        time.sleep(0.01)
    return stats


def records(tmp_path):
    return read_jsonl(next((tmp_path / "results/t/zero_shot").iterdir()) / "samples.jsonl")


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_example_scored_exactly_once_under_20_percent_faults(tmp_path, name):
    with FakeAPIServer(faults=FAULTS, retry_after=0.02, timeout_hold=5, responder=sentiment, seed=5) as srv:
        path = api_experiment(tmp_path, name, srv.base_url, model={"timeout": 0.3, "max_retries": 10})
        (result,) = run_experiment(load_experiment(path))
        stats = settled(srv)
    assert len(stats["by_outcome"]) >= 4, stats["by_outcome"]  # a mix of faults was hit (each kind: below)
    assert stats["requests"] == 40 + sum(n for kind, n in stats["by_outcome"].items() if kind != "ok")
    assert stats["unique_succeeded"] == 40 and set(stats["successes_per_key"].values()) == {1}
    assert stats["repeated_successes"] == 0 and stats["requests_after_success"] == 0
    assert stats["sdk_retries"] == 0  # the retry policy is ladder's, not the SDK's
    rows = records(tmp_path)
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40 and not any(r["error"] for r in rows)
    assert result.metric.n == 40 and result.stats.errors == 0


def test_aiohttp_transport_under_faults_or_a_clear_error_without_it():
    prompts = [[Message("user", f"question {i}")] for i in range(12)]
    with FakeAPIServer(faults=FAULTS, retry_after=0.01, timeout_hold=5, seed=1) as srv:
        b = make("openai", srv, http_client="aiohttp", timeout=0.3, max_retries=10)
        if importlib.util.find_spec("aiohttp") is None:
            with pytest.raises(BackendError, match="pip install openai aiohttp"):
                b.preflight()
            return
        b.preflight()
        out = generate(b, Cache(None), prompts, GenerationConfig())
        stats = settled(srv)
    assert stats["unique_succeeded"] == 12 and stats["repeated_successes"] == 0 and len(stats["by_outcome"]) > 1
    assert all(s.finish_reason != "error" for (s,) in out)


def test_a_finished_stage_with_failed_examples_retries_only_those(tmp_path):
    with FakeAPIServer(faults={"500": 0.3}, responder=sentiment, seed=1) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"max_retries": 0})
        (first,) = run_experiment(load_experiment(path))
        failed = first.stats.errors
        assert 0 < failed < 40 and first.metric.n == 40 - failed
        srv.configure(faults={"500": 0.0})
        srv.reset()
        (second,) = run_experiment(load_experiment(path))
        assert srv.stats()["requests"] == failed and srv.stats()["requests_after_success"] == 0
    assert second.run_id == first.run_id and second.stats.errors == 0 and second.metric.n == 40


@pytest.mark.parametrize("kind", sorted(FAULTS))
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_each_fault_kind_is_retried_until_it_succeeds(name, kind):
    prompts = [[Message("user", f"question {i}")] for i in range(6)]
    with FakeAPIServer(faults={kind: 0.5}, retry_after=0.01, timeout_hold=5) as srv:
        out = generate(make(name, srv, timeout=0.3, max_retries=20), Cache(None), prompts, GenerationConfig())
        stats = settled(srv)
    assert stats["by_outcome"][kind] > 0 and stats["by_outcome"]["ok"] == 6
    assert stats["repeated_successes"] == 0 and all(s.finish_reason != "error" for (s,) in out)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_retry_after_is_honoured_then_the_sample_is_an_error(name):
    with FakeAPIServer(faults={"429": 1.0}, retry_after=0.25) as srv:
        b = make(name, srv, max_retries=2, backoff=0)  # no backoff of our own: only the server's wait
        start = time.perf_counter()
        (s,), = generate(b, Cache(None), [[Message("user", "hi")]], GenerationConfig())
        waited = time.perf_counter() - start
        assert srv.stats()["requests"] == 3
    # Two waits of 0.25 s; without honouring Retry-After (backoff=0) the three attempts take ~10 ms.
    # The margin absorbs timer and clock jitter on a loaded machine (0.45 s was seen once).
    assert waited >= 0.4
    assert s.finish_reason == "error" and s.error.startswith("HTTP 429") and s.error.endswith("(after 3 attempts)")


def test_retry_after_header_forms():
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert 8 < retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None


def test_backoff_grows_and_is_capped():
    b = BACKENDS.get("openai")(BACKENDS.get("openai").Config(name="m", backoff=1.0, max_backoff=5.0))
    assert [0.5 <= b._delay(a, None) <= 2 ** a for a in range(3)] == [True] * 3
    assert b._delay(10, None) <= 5.0 and b._delay(0, 100.0) <= 5.0 * 1.25 and b._delay(0, 0.2) >= 0.2


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_rejected_key_stops_the_stage_without_quoting_the_key(name):
    import httpx2

    b = BACKENDS.get(name)(BACKENDS.get(name).Config(name="m", api_key_env=KEY_ENV))
    sdk = b.sdk()
    response = httpx2.Response(401, request=httpx2.Request("POST", "http://127.0.0.1/v1/x"))
    exc = sdk.AuthenticationError(f"Incorrect API key provided: {KEY}", response=response,
                                  body={"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(BackendError, match="HTTP 401: Incorrect API key provided: \\*\\*\\*") as e:
        b._failure(exc, None, KEY)
    assert KEY not in e.value.render() and KEY_ENV in e.value.render()


def test_scrub_and_token_split():
    text = f"Incorrect API key provided: {KEY}. Also sk-ant-api03-abcdefgh1234 and sk-abc***xyz9."
    clean = scrub(text, KEY)
    assert KEY not in clean and "sk-ant-api03" not in clean and "Incorrect API key provided" in clean
    assert split(10, [1, 1, 1]) == [4, 3, 3] and split(7, [2, 0, 5]) == [2, 0, 5] and split(5, [0, 0]) == [3, 2]


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_sigkilled_cli_run_resumes_without_repeating_finished_requests(tmp_path, name):
    # 4 in flight at 0.3 s each: answers come in waves of 4, so a kill between waves is clean. 20% of
    # answers are 500s and there are no retries, so failed examples (with their error texts) are
    # on disk too when the kill lands.
    with ServerProcess(tmp_path, "--latency", "0.3", "--fault-500", "0.2") as srv:
        path = api_experiment(tmp_path, name, srv.base_url, model={"concurrency": 4, "max_retries": 0})
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        cmd = [sys.executable, "-m", "ladder.cli", "run", str(path)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while srv.stats()["successes"] < 8 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the client commits the wave it just got; the next wave is mid-flight
        proc.send_signal(signal.SIGKILL)
        first_out, first_err = proc.communicate()
        at_kill = srv.stats()
        finished = len(Cache(tmp_path / "cache"))
        assert 8 <= finished == at_kill["successes"] < 40 and at_kill["by_outcome"].get("500", 0) > 0
        assert any(r["error"] for r in records(tmp_path))

        srv.configure(latency=0, faults={"500": 0})
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        stats = srv.stats()
    assert stats["requests_after_success"] == 0  # nothing that had finished was sent again
    assert stats["unique_succeeded"] == 40 and stats["repeated_successes"] == 0
    assert f"{40 - finished} generated" in " ".join(done.stderr.split())  # the failed and the unfinished
    assert "zero_shot" in done.stdout and "choice" in done.stdout  # the table
    rows = records(tmp_path)
    assert len({r["id"] for r in rows if not r["error"]}) == 40
    assert stats["auth"]["none"] == 0  # the key went with every request, and nowhere else:
    assert leaks(tmp_path / "results", tmp_path / "cache", first_out.decode(), first_err.decode(),
                 done.stdout, done.stderr) == []


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_run_killed_mid_stage_ends_exactly_like_an_uninterrupted_one(tmp_path, name):
    # zero_shot, then best_of_n with 3 samples per prompt: openai asks for them in one request
    # (the responder answers each sample index differently, so the winners depend on all of them),
    # anthropic in three, so there the kill can also land between the samples of one prompt.
    stages = [{"type": "zero_shot"}, {"type": "best_of_n", "n": 3}]
    per_prompt = 1 if name == "openai" else 3
    total = 40 + 40 * per_prompt  # requests of the whole experiment, each answered once (no faults)
    with ServerProcess(tmp_path, responder="tests.backends.api_support:varied") as srv:
        def command(folder):
            path = api_experiment(folder, name, srv.base_url, stages=stages, model={"concurrency": 4})
            env = {**ENV, "LADDER_CACHE_DIR": str(folder / "cache")}
            return [sys.executable, "-m", "ladder.cli", "run", str(path)], env

        cmd, env = command(tmp_path / "whole")  # the reference: one run, never interrupted
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert srv.stats()["requests"] == total

        srv.reset()
        srv.configure(latency=0.3)  # answers come in waves of 4, so a kill between waves is clean
        cmd, env = command(tmp_path / "killed")
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while srv.stats()["successes"] < 40 + 8 * per_prompt and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the client commits the wave it just got; the next wave is mid-flight
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = srv.stats()["successes"]
        results = tmp_path / "killed/results/t"
        assert 40 < at_kill < total and not list(results.glob("best_of_n/*/metrics.json"))  # mid best_of_n

        srv.configure(latency=0)
        again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        stats = srv.stats()
    # Killed + resumed got exactly the answers of one whole run: nothing finished was asked again.
    # (The wave in flight at the kill was never answered — 'client_gone' — and is asked again.)
    assert stats["successes"] == total and set(stats["by_outcome"]) <= {"ok", "client_gone"}
    assert stats["requests_after_success"] == 0 or name == "anthropic"  # its 3 samples share a body
    samples_left = 3 * 40 - (at_kill - 40) * (3 // per_prompt)
    assert f"{samples_left} generated" in " ".join(again.stderr.split())  # best_of_n generated only those
    for stage in ("zero_shot", "best_of_n"):
        assert outcome(results, stage) == outcome(tmp_path / "whole/results/t", stage), stage


def test_errors_count_examples_failed_now_not_lines(tmp_path):
    # A dead server, no retries: every run appends a failed line per example. Errors must stay the
    # number of examples that are failed now (20 → 40 → 60 was the bug), and n + errors ≤ 40.
    with FakeAPIServer(faults={"500": 1.0}, responder=sentiment) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"max_retries": 0})
        runs = [run_experiment(load_experiment(path))[0] for _ in range(3)]
        assert len(records(tmp_path)) == 3 * 40  # the lines are there: the count must not follow them
        srv.configure(faults={"500": 0.5})
        (mixed,) = run_experiment(load_experiment(path))
    assert [r.stats.errors for r in runs] == [40, 40, 40] and all(r.metric.n == 0 for r in runs)
    assert 0 < mixed.stats.errors < 40 and mixed.metric.n + mixed.stats.errors == 40


def test_a_run_that_measured_nothing_exits_1_and_writes_no_nan(tmp_path):
    with ServerProcess(tmp_path, "--fault-500", "1.0") as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"max_retries": 0})
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    err = " ".join(out.stderr.split())
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in err and "scored no example (n=0)" in err and "HTTP 500" in err
    assert "zero_shot (40 examples failed after all retries" in err and "run the same command again" in err
    # No "nan" printed ("choice = nan n=0") nor written ("nan% of samples ended on a stop").
    assert not re.search(r"\bnan\b", out.stdout + out.stderr, re.IGNORECASE), out.stderr
    assert "zero_shot choice has no value (no example scored) n=0" in err
    (run_dir,) = (tmp_path / "results/t/zero_shot").iterdir()
    text = (run_dir / "metrics.json").read_text()
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), text
    assert "NaN" not in text and json.loads(text)["metric"] == {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    from ladder.evidence import load_results  # and the readers cope with the nulls
    (back,) = load_results(tmp_path / "results/t")
    assert back.metric.n == 0 and math.isnan(back.metric.value)
    (entry,) = read_jsonl(tmp_path / "results/t/log.jsonl")  # the research log has the n=0 run too
    assert entry["rows"][0]["n"] == 0 and entry["rows"][0]["value"] == ""


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    with ServerProcess(tmp_path, "--latency", "0.3") as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"concurrency": 2})
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        # SIGINT back to its default in the child: a suite started in the background (`make test &`)
        # runs with SIGINT ignored, which children inherit, and Ctrl-C would then never arrive.
        proc = subprocess.Popen([sys.executable, "-m", "ladder.cli", "run", str(path)], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 60
        while srv.stats()["successes"] < 2 and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before the interrupt: the test proved nothing"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished work is saved; run the same command again to resume" in " ".join(err.split())
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# A URL no request can reach is a configuration error; a server that stays down is bounded in time


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNREACHABLE = {
    "closed_port": (lambda: f"http://127.0.0.1:{closed_port()}/v1", "connection was refused",
                    "start the server, or correct the host and port in model.base_url"),
    "unknown_host": (lambda: "http://nonexistent.invalid/v1", "host name does not resolve",
                     "correct the host in model.base_url"),
    "no_scheme": (lambda: "127.0.0.1:8000/v1", "has no http:// or https://",
                  "write it with its scheme, e.g. http://127.0.0.1:8000/v1"),
}


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_an_unreachable_url_stops_the_cli_run_in_seconds(tmp_path, name, kind):
    make_url, says, fix = UNREACHABLE[kind]
    url = make_url()
    # The defaults' retry policy: before, a closed port cost ~47 s of backoff per request, then exit 0.
    path = api_experiment(tmp_path, name, url, model={"backoff": 1.0, "max_backoff": 60.0, "timeout": 120.0})
    env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "Traceback" not in text, text
    assert text.count("error:") == 1 and url in text and says in text and f"Fix: {fix}" in text, text
    assert took < 30, f"took {took:.1f} s"  # a start-up and one failed connection, no backoff
    assert not (tmp_path / "results").exists()  # stopped before the results folder was touched
    assert leaks(tmp_path, done.stdout, done.stderr) == []


class NotTLS:
    """A TCP server that answers whatever it is sent with a plain-HTTP reply: a TLS client's
    handshake then fails (the reply is no TLS record)."""

    def __enter__(self) -> NotTLS:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    def __exit__(self, *exc) -> None:
        self.sock.close()


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_failed_tls_handshake_is_a_configuration_error(name):
    with NotTLS() as srv:
        cls = BACKENDS.get(name)
        b = cls(cls.Config(name="m", base_url=f"https://127.0.0.1:{srv.port}/v1", api_key_env=KEY_ENV, **FAST))
        with pytest.raises(BackendError, match="TLS \\(https\\) handshake failed") as e:
            b.probe()
    assert "use http:// for a server without TLS" in e.value.render() and KEY not in e.value.render()


def refused(b) -> Exception:
    """What the backend's own SDK client raises when a request meets a closed port."""
    async def post():
        client = b.client(KEY)
        try:
            await client.post(b.path, body={}, cast_to=bytes)
        except Exception as e:  # noqa: BLE001 - the exception is the point
            return e
        finally:
            await client.close()

    return asyncio.run(post())


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_connection_failures_after_a_success_are_retried_not_fatal(name, transport):
    # A server that answered once and then went away is a transient fault: retried, then an
    # error sample — never the configuration error a wrong URL gets. Its reason says "refused"
    # (aiohttp's transport raised a connect timeout, which was reported as "ConnectTimeout").
    if transport == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        pytest.skip("aiohttp not installed")
    b = BACKENDS.get(name)(BACKENDS.get(name).Config(name="m", base_url=f"http://127.0.0.1:{closed_port()}",
                                                     api_key_env=KEY_ENV, **FAST, max_retries=1,
                                                     http_client=transport))
    exc = refused(b)
    failure = b._failure(exc, _Tally(ok=1), KEY)
    assert failure.retry and failure.reason == "connection refused", failure.reason
    with pytest.raises(BackendError, match="connection was refused"):
        b._failure(exc, _Tally(), KEY)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_max_retry_seconds_bounds_each_request_against_a_server_that_stays_down(name):
    with FakeAPIServer(faults={"500": 1.0}) as srv:
        # Retries left for minutes (100 at up to 0.2 s), but at most 1 s of retrying per request.
        b = make(name, srv, max_retries=100, backoff=0.05, max_backoff=0.2, max_retry_seconds=1.0)
        start = time.perf_counter()
        out = generate(b, Cache(None), [[Message("user", f"q{i}")] for i in range(3)], GenerationConfig())
        took = time.perf_counter() - start
        stats = srv.stats()
    assert took < 5, f"took {took:.1f} s"
    assert 3 * 3 <= stats["requests"] < 3 * 100  # retried several times, far fewer than max_retries
    for (s,) in out:
        assert s.finish_reason == "error" and s.error.startswith("HTTP 500")
        assert "max_retry_seconds is 1" in s.error


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_deadline_that_cuts_an_attempt_short_still_names_the_servers_error(name):
    # Each 500 takes 0.4 s: the third attempt starts at ~0.8 s and is cut by the 1 s deadline. The
    # error names the cause (the server's 500s), not only the deadline.
    with FakeAPIServer(latency=0.4, faults={"500": 1.0}) as srv:
        b = make(name, srv, max_retries=100, backoff=0.01, max_backoff=0.01, max_retry_seconds=1.0)
        ((s,),) = generate(b, Cache(None), [[Message("user", "q")]], GenerationConfig())
    assert s.finish_reason == "error" and s.error.startswith("HTTP 500"), s.error
    assert "max_retry_seconds is 1" in s.error


# ---------------------------------------------------------------------------------------------
# A server that fails everything stops the stage early, skips the stages on its model, prints no NaN


def test_an_all_5xx_server_stops_the_stage_after_a_run_of_failures_and_skips_its_later_stages(tmp_path):
    # Today: every one of the 40 examples is retried to the end (3 attempts each), and few_shot on
    # the same model repeats it all: 240 requests; at n=300 and defaults that was 471 s a stage.
    with ServerProcess(tmp_path, "--fault-500", "1.0") as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"max_retries": 2, "concurrency": 4},
                              stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 2}])
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        stats = srv.stats()
    err = " ".join(out.stderr.split())
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in err and "scored no example (n=0)" in err and "HTTP 500" in err
    assert "zero_shot (40 examples failed after all retries" in err
    assert re.search(r"\b2[0-3] requests in a row failed on server errors", err)
    assert "few_shot skipped: the server failed 20 requests in a row" in err
    # 20 requests failed in a row (and the ≤ 3 others in flight then), 3 attempts each; few_shot sent nothing.
    assert stats["requests"] <= (20 + 3) * 3, stats["requests"]
    rows = records(tmp_path)
    assert len(rows) == 40 and all(r["error"] for r in rows)
    assert sum("not sent: the server failed 20 requests in a row" in r["samples"][0]["error"] for r in rows) >= 40 - 23
    assert not (tmp_path / "results/t/few_shot").exists()
    # No "nan" anywhere: not in what the run printed, nor in a file it wrote (issue 22.16).
    written = [f.read_text() for f in (tmp_path / "results").rglob("*") if f.is_file()]
    assert not [t for t in (out.stdout, out.stderr, *written) if re.search(r"\bnan\b", t, re.IGNORECASE)], \
        re.findall(r".{60}\bnan\b.{20}", out.stdout + out.stderr, re.IGNORECASE)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_max_retry_seconds_bounds_a_request_the_server_accepts_and_never_answers(name):
    # Today one attempt waits the whole `timeout` (20 s here) although max_retry_seconds is 1.
    with FakeAPIServer(faults={"timeout": 1.0}, timeout_hold=60) as srv:
        b = make(name, srv, timeout=20, max_retries=5, max_retry_seconds=1.0)
        start = time.perf_counter()
        ((s,),) = generate(b, Cache(None), [[Message("user", "q")]], GenerationConfig())
        took = time.perf_counter() - start
    assert took < 10, f"took {took:.1f} s"
    assert s.finish_reason == "error" and "max_retry_seconds (1 s)" in s.error


def echo_key(req, index: int) -> str:
    """A server that echoes the request's credentials in a normal answer (a debugging proxy, a
    misconfigured gateway)."""
    return f"{sentiment(req, index)} (request authorised by Authorization: Bearer {KEY}; x-api-key {KEY})"


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("batch", [False, True])
def test_a_key_the_server_echoes_in_an_answer_reaches_neither_samples_nor_cache(tmp_path, monkeypatch, name, batch):
    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path / "cache"))
    with FakeAPIServer(responder=echo_key) as srv:
        path = api_experiment(tmp_path, name, srv.base_url, model={"batch": batch, "batch_poll_interval": 0.05},
                              generation={"max_tokens": 32})
        (result,) = run_experiment(load_experiment(path))
    assert result.metric.n == 40 and result.metric.value > 0.5  # the answers are still read
    rows = records(tmp_path)
    assert all("Bearer ***" in r["samples"][0]["text"] for r in rows)
    assert leaks(tmp_path / "results", tmp_path / "cache") == []


@pytest.mark.parametrize("role", ["scorer", "metric"])
def test_a_judge_at_a_closed_port_stops_the_run_before_anything_is_written_naming_its_field(tmp_path, role):
    # Before: zero_shot ran and wrote its results, then best_of_n failed on the judge, naming
    # `model.base_url` (the policy's field, which is fine) instead of the judge's own; a judge that is
    # the task metric was not probed at all, and its error named `model.base_url` too.
    url = f"http://127.0.0.1:{closed_port()}/v1"
    judge = {"type": "judge", "template": "{completion}",
             "model": {"backend": "openai", "name": "judge", "base_url": url, "api_key_env": KEY_ENV}}
    where, overrides = {"scorer": ("stages.best_of_n.scorer", {"stages": [
        {"type": "zero_shot"}, {"type": "best_of_n", "n": 2, "scorer": judge}]}),
        "metric": ("metric", {"metric": judge, "stages": [{"type": "zero_shot"}]})}[role]
    with ServerProcess(tmp_path) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, **overrides)
        env = {**ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        done, checked = (subprocess.run([sys.executable, "-m", "ladder.cli", command, str(path)], env=env,
                                        cwd=tmp_path, capture_output=True, text=True, timeout=120)
                         for command in ("run", "check"))
        sent = srv.stats()["requests"]
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "Traceback" not in text, text
    assert f"field '{where}.model.base_url'" in text and "connection was refused" in text, text
    assert f"correct the host and port in {where}.model.base_url" in text and "Timeout" not in text
    assert sent == 0 and not (tmp_path / "results").exists()
    shown = " ".join(checked.stdout.split())
    assert checked.returncode == 2 and f"unreachable: judge at {url} ({where}.model)" in shown, shown


def test_check_probes_every_server_the_run_calls_and_offline_skips_it(tmp_path):
    # Today `ladder check` against a closed port says "config and data OK" and exits 0.
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with ServerProcess(tmp_path) as srv:
        judge = {"type": "judge", "template": "{completion}",
                 "model": {"backend": "openai", "name": "judge", "base_url": url, "api_key_env": KEY_ENV}}
        path = api_experiment(tmp_path, "openai", srv.base_url,
                              stages=[{"type": "zero_shot"}, {"type": "best_of_n", "n": 2, "scorer": judge}])

        def check(*extra):
            return subprocess.run([sys.executable, "-m", "ladder.cli", "check", str(path), *extra], env=ENV,
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120)

        live = check()
        offline = check("--offline")
        sent = srv.stats()["requests"]
    out = " ".join(live.stdout.split())
    err = " ".join(live.stderr.split())
    assert live.returncode == 2 and "Traceback" not in err, live.stderr
    assert f"reachable: gpt-4o-mini at {srv.base_url} (model)" in out
    assert f"unreachable: judge at {url} (stages.best_of_n.scorer.model)" in out
    assert "field 'stages.best_of_n.scorer.model.base_url'" in err and "connection was refused" in err
    assert offline.returncode == 0 and "reachable" not in offline.stdout, offline.stderr
    assert sent == 0  # the probe is the free model list, never a completion

