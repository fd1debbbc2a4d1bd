"""The per-model rate controller (ladder/backends/limits.py) against the fake server's limiter."""

from __future__ import annotations

import asyncio

import pytest

from ladder.backends.base import generate
from ladder.backends.limits import Controller, controller_for, read_limits
from ladder.cache import Cache
from ladder.config import GenerationConfig
from ladder.registry import BACKENDS
from ladder.testing.fake_api import FakeAPIServer
from ladder.types import Message
from tests.backends.api_support import FAST, KEY_ENV

BACKEND_NAMES = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-limits")


def make(name: str, srv, **kw):
    cls = BACKENDS.get(name)
    return cls(cls.Config(name="m", base_url=srv.base_url, api_key_env=KEY_ENV, **{**FAST, **kw}))


def prompts(n: int, tag: str = "q") -> list[list[Message]]:
    return [[Message("user", f"{tag} {i}")] for i in range(n)]


def test_auto_is_the_default_slow_start_then_one_cut_per_round_trip():
    cls = BACKENDS.get("openai")
    assert cls.Config(name="m").concurrency == "auto"
    ctl = Controller("auto", floor=2, ceiling=40)

    async def go() -> None:
        assert ctl.cap() == 8  # START
        for _ in range(8):
            await ctl.acquire()
        for _ in range(8):
            ctl.on_success()
            ctl.release()
        assert ctl.cap() == 16  # slow start: +1 per success
        sent = [await ctl.acquire() for _ in range(16)]
        for t in sent:  # a burst of 429s from one overshoot: one cut, not a collapse to the floor
            ctl.on_rate_limited(t)
            ctl.release()
        assert ctl.cap() == 8 and ctl.rate_limited == 16
        for _ in range(8):  # after the cut: additive, +1 per `limit` successes
            await ctl.acquire()
            ctl.on_success()
            ctl.release()
        assert ctl.cap() == 8 < ctl.limit < 9.5
        for _ in range(10):  # cuts never go under the floor
            ctl.on_rate_limited(await ctl.acquire())
            ctl.release()
        assert ctl.cap() == 2

    asyncio.run(go())
    assert Controller(5).cap() == 5  # a number fixes it


def test_a_long_retry_after_on_every_429_never_freezes_the_controller():
    # The inspect_ai adaptive-connections bug: a provider sending a long Retry-After on every 429
    # froze the controller. Here the hint is the rejected request's own wait; the others go on.
    ctl = Controller("auto", floor=1, ceiling=64)

    async def go() -> None:
        for _ in range(50):
            sent = await ctl.acquire()
            ctl.on_rate_limited(sent, {"retry-after": "600"})
            ctl.release()
        # still hands out slots at once, at the floor or above
        got = [await asyncio.wait_for(ctl.acquire(), 1.0) for _ in range(ctl.cap())]
        assert len(got) >= 1

    asyncio.run(go())


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_requests_not_rejected_are_answered_while_the_rejected_wait_out_a_long_retry_after(name):
    # No headers (nothing to pace by), a small bucket, and a 3 s Retry-After on every 429: the
    # controller must keep the other requests going, not wait with them.
    limits = {"rpm": 600, "mode": "free", "headers": False, "retry_after": 3.0}
    seen_retry_at_answer = {}
    with FakeAPIServer(limits=limits) as srv:
        b = make(name, srv, max_backoff=60)

        def answered(p, samples):
            seen_retry_at_answer[p] = srv.stats()["max_attempts_per_key"] > 1

        out = generate(b, Cache(None), prompts(40), GenerationConfig(), on_prompt_done=answered)
        stats = srv.stats()
    assert all(s.finish_reason != "error" for (s,) in out)
    assert stats["by_status"].get("429", 0) > 0 and stats["repeated_successes"] == 0
    rejected = stats["requests"] - stats["unique_requests"]  # prompts that needed another attempt
    first_time = [p for p, retried in seen_retry_at_answer.items() if not retried]
    assert len(first_time) >= 40 - rejected - 1  # answered before any 3 s wait ended
    assert b.controller().rate_limited > 0 and b.controller().cap() >= 1


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_pacing_from_the_providers_headers_keeps_429s_rare_and_answers_each_prompt_once(name):
    with FakeAPIServer(latency=0.02, limits={"rpm": 1200, "mode": "spend"}) as srv:
        b = make(name, srv)
        out = generate(b, Cache(None), prompts(80), GenerationConfig())
        stats = srv.stats()
    assert all(s.finish_reason != "error" for (s,) in out)
    assert stats["unique_succeeded"] == 80 and stats["repeated_successes"] == 0  # each (prompt, sample) once
    assert b.controller().rpm == 1200  # learnt from x-ratelimit-* / anthropic-ratelimit-*
    assert stats["by_status"].get("429", 0) <= 0.05 * stats["requests"]


def test_a_known_rate_limit_paces_from_the_first_request():
    with FakeAPIServer(limits={"rpm": 600, "mode": "spend", "headers": False}) as srv:
        b = make("openai", srv, rate_limit={"requests_per_minute": 600})
        out = generate(b, Cache(None), prompts(30), GenerationConfig())
        stats = srv.stats()
    assert all(s.finish_reason != "error" for (s,) in out)
    assert stats["by_status"].get("429", 0) == 0 and stats["requests"] == 30
    report = b.controller().report({"t": 0, "ok": 0, "rate_limited": 0, "waited": 0})
    assert report["requests_per_minute"] == 600 and report["waited_seconds"] > 1  # 30 at 10/s: paced


def test_tokens_per_minute_limit_is_paced_too():
    with FakeAPIServer(limits={"rpm": None, "tpm": 6000, "mode": "spend"}) as srv:
        b = make("openai", srv)
        gen = GenerationConfig(max_tokens=10)
        out = generate(b, Cache(None), prompts(40), gen)
        stats = srv.stats()
    assert all(s.finish_reason != "error" for (s,) in out)
    assert b.controller().tpm == 6000
    assert stats["by_status"].get("429", 0) <= 0.1 * stats["requests"]


def test_one_controller_per_provider_url_model_and_key():
    a = controller_for(("openai", "http://x", "m", "K"), "auto", 1, 64)
    assert controller_for(("openai", "http://x", "m", "K"), "auto", 1, 64) is a
    assert controller_for(("openai", "http://x", "judge", "K"), "auto", 1, 64) is not a
    assert controller_for(("openai", "http://x", "m", "OTHER_KEY"), "auto", 1, 64) is not a


def test_both_providers_headers_are_read():
    assert read_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "200000"}) == (500, 200000)
    assert read_limits({"anthropic-ratelimit-requests-limit": "50",
                        "anthropic-ratelimit-input-tokens-limit": "40000"}) == (50, 40000)
    assert read_limits({"x-ratelimit-limit-requests": "soon"}) == (None, None)


def test_progress_line_metrics_json_and_check_show_the_controller(tmp_path, monkeypatch):
    """The stage's progress line names the concurrency and the rate-limit answers; metrics.json
    keeps the controller's trace; `ladder check` gives the wall time `rate_limit:` allows."""
    import json

    from tests.backends.api_support import api_experiment
    from tests.test_cli import ladder

    monkeypatch.setenv(KEY_ENV, "sk-test-limits")
    with FakeAPIServer(latency=0.01, limits={"rpm": 1200, "mode": "spend"}) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url,
                              model={"rate_limit": {"requests_per_minute": 120, "tokens_per_minute": 600}})
        out = ladder("check", path, env={KEY_ENV: "sk-test-limits"})
        assert out.returncode == 0, out.stderr
        flat = " ".join(out.stdout.split())
        # 40 requests at 120/min: 20 s; 40 × (prompt + 4 max tokens) tokens at 600/min: more
        assert "zero_shot: at its rate_limit (120 requests/min, 600 tokens/min) the 40 requests" in flat
        assert "(tokens bound)" in flat
        path = api_experiment(tmp_path, "openai", srv.base_url)
        done = ladder("run", path, env={KEY_ENV: "sk-test-limits"})
        assert done.returncode == 0, done.stderr
    assert "zero_shot: generating 40/40" in done.stderr and "· concurrency " in done.stderr
    assert "rate-limited" in done.stderr
    (metrics,) = (tmp_path / "results" / "t" / "zero_shot").glob("*/metrics.json")
    control = json.loads(metrics.read_text())["stats"]["rate_control"]
    assert control["mode"] == "auto" and control["answered"] == 40 and control["requests_per_minute"] == 1200
    assert control["concurrency_trace"][0][0] == 0.0 and control["rate_limited"] >= 0
