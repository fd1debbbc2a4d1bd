"""The fake server's rate limiter (ladder/testing/limiter.py), seen through the real SDKs."""

from __future__ import annotations

import anthropic
import openai
import pytest

from ladder.testing.fake_api import FakeAPIServer

MSGS = [{"role": "user", "content": "hello there"}]


def ask_openai(srv):
    client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
    return client.chat.completions.with_raw_response.create(model="m", messages=MSGS, max_tokens=5)


@pytest.mark.parametrize("mode", ["free", "spend"])
def test_requests_bucket_answers_429_with_openais_headers(mode):
    with FakeAPIServer(limits={"rpm": 6, "mode": mode}) as srv:  # one each 10 s, a bucket of 1
        ok = ask_openai(srv)
        assert ok.headers["x-ratelimit-limit-requests"] == "6"
        assert ok.headers["x-ratelimit-remaining-requests"] == "0"
        assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
        with pytest.raises(openai.RateLimitError) as rejected:
            ask_openai(srv)
        headers = rejected.value.response.headers
        wait = int(headers["retry-after-ms"])
        assert int(headers["retry-after"]) == -(-wait // 1000)  # whole seconds, rounded up
        # free: the next request fits once the bucket refills (10 s); spend: the rejected request
        # was charged too, so the bucket is in debt and the wait is twice that
        assert (9000 < wait <= 10000) if mode == "free" else (19000 < wait <= 20000)
        assert srv.stats()["by_status"] == {"200": 1, "429": 1}


def test_tokens_bucket_charges_prompt_plus_max_tokens_and_anthropic_headers():
    with FakeAPIServer(limits={"tpm": 600, "retry_after": 30}) as srv:  # 10 tokens a second, a bucket of 10
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="sk-ant-test", max_retries=0)
        first = client.messages.with_raw_response.create(model="m", messages=MSGS, max_tokens=5)  # 2 + 5 tokens
        assert first.headers["anthropic-ratelimit-tokens-limit"] == "600"
        assert first.headers["anthropic-ratelimit-tokens-remaining"] == "3"
        assert first.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
        with pytest.raises(anthropic.RateLimitError) as rejected:  # 7 more do not fit in 3
            client.messages.create(model="m", messages=MSGS, max_tokens=5)
        assert rejected.value.response.headers["retry-after"] == "30"  # the fixed (long) hint


def test_headers_can_be_left_out_and_bad_limits_are_refused():
    with FakeAPIServer(limits={"rpm": 60, "headers": False}) as srv:
        assert not any(h.startswith("x-ratelimit") for h in ask_openai(srv).headers)
    with pytest.raises(ValueError, match="mode"):
        FakeAPIServer(limits={"rpm": 60, "mode": "sometimes"}).app.config.validate()
    with pytest.raises(ValueError, match="> 0"):
        FakeAPIServer(limits={"rpm": -1})
