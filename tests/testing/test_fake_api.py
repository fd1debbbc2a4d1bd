"""The fake API server, exercised with the real OpenAI and Anthropic SDK clients over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from ladder.testing.fake_api import FAULT_KINDS, Config, FakeAPIServer, FakeRequest, request_key

REPO = Path(__file__).resolve().parents[2]
MSGS = [{"role": "user", "content": "hello there"}]


def oai(srv: FakeAPIServer, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="sk-test", **{"max_retries": 0, **kw})


def ant(srv: FakeAPIServer, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.base_url, api_key="sk-ant-test", **{"max_retries": 0, **kw})


def fixed(text: str):
    return lambda req, i: text


# --- OpenAI chat completions ---------------------------------------------------------------------


def test_openai_basic_completion_and_usage():
    with FakeAPIServer(responder=fixed("the answer is four")) as srv:
        raw = oai(srv).chat.completions.with_raw_response.create(
            model="gpt-fake", messages=[{"role": "system", "content": "be brief"}, *MSGS])
        r = raw.parse()
        assert raw.headers["x-request-id"]
        assert r.object == "chat.completion" and r.model == "gpt-fake" and r.id.startswith("chatcmpl-")
        (choice,) = r.choices
        assert choice.index == 0 and choice.message.role == "assistant"
        assert choice.message.content == "the answer is four" and choice.finish_reason == "stop"
        assert choice.logprobs is None
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 4, 8)
        stats = srv.stats()
        assert stats["requests"] == stats["successes"] == 1
        assert stats["auth"] == {"bearer": 1, "x-api-key": 0, "none": 0}
        assert "sk-test" not in json.dumps(stats)  # presence of a key is recorded, never its value


def test_openai_path_with_v1_and_content_parts():
    seen: list[FakeRequest] = []

    def responder(req, i):
        seen.append(req)
        return "ok"

    with FakeAPIServer(responder=responder) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        content = [{"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}])
    assert seen[0].provider == "openai" and seen[0].prompt == "part one part two"
    assert (seen[0].temperature, seen[0].top_p, seen[0].n, seen[0].stop) == (1.0, 1.0, 1, [])


def test_openai_n_samples_differ_unless_temperature_zero():
    with FakeAPIServer() as srv:
        client = oai(srv)
        hot = client.chat.completions.create(model="m", messages=MSGS, n=4, temperature=0.8)
        texts = [c.message.content for c in hot.choices]
        assert [c.index for c in hot.choices] == [0, 1, 2, 3] and len(set(texts)) == 4
        again = client.chat.completions.create(model="m", messages=MSGS, n=4, temperature=0.8)
        assert [c.message.content for c in again.choices] == texts  # deterministic across calls
        seeded = client.chat.completions.create(model="m", messages=MSGS, n=4, temperature=0.8, seed=7)
        assert [c.message.content for c in seeded.choices] != texts
        cold = client.chat.completions.create(model="m", messages=MSGS, n=3, temperature=0)
        assert len({c.message.content for c in cold.choices}) == 1
        assert hot.usage.completion_tokens == sum(len(t.split()) for t in texts)


def test_openai_stop_and_length():
    with FakeAPIServer(responder=fixed("alpha beta STOP gamma delta END")) as srv:
        create = oai(srv).chat.completions.create
        r = create(model="m", messages=MSGS, stop="STOP")
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("alpha beta ", "stop")
        r = create(model="m", messages=MSGS, stop=["END", "gamma"])  # the earliest match wins
        assert r.choices[0].message.content == "alpha beta STOP "
        r = create(model="m", messages=MSGS, max_tokens=2)
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("alpha beta", "length")
        assert r.usage.completion_tokens == 2
        r = create(model="m", messages=MSGS, max_completion_tokens=3, stop=["END"])  # limit hits first
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("alpha beta STOP", "length")
        r = create(model="m", messages=MSGS, max_completion_tokens=50)
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("alpha beta STOP gamma delta END", "stop")


def test_openai_logprobs():
    with FakeAPIServer(responder=fixed("one two three")) as srv:
        r = oai(srv).chat.completions.create(model="m", messages=MSGS, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        assert "".join(t.token for t in content) == "one two three"
        for t in content:
            assert t.logprob <= 0 and bytes(t.bytes).decode() == t.token
            assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
            assert sorted((x.logprob for x in t.top_logprobs), reverse=True) == [x.logprob for x in t.top_logprobs]
        with pytest.raises(openai.BadRequestError):  # like the real API
            oai(srv).chat.completions.create(model="m", messages=MSGS, top_logprobs=2)


def test_models_endpoint_both_sdks():
    with FakeAPIServer(models=("a", "b")) as srv:
        assert [m.id for m in oai(srv).models.list()] == ["a", "b"]
        assert [m.id for m in ant(srv).models.list()] == ["a", "b"]


def test_bad_requests_use_provider_error_formats():
    with FakeAPIServer() as srv:
        with pytest.raises(openai.BadRequestError) as e:
            oai(srv).chat.completions.create(model="m", messages=MSGS, n=0)
        assert e.value.body["type"] == "invalid_request_error"
        with pytest.raises(anthropic.BadRequestError) as e:
            ant(srv).messages.create(model="m", max_tokens=5, messages=[{"content": "no role"}])
        assert e.value.body["error"]["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError):
            oai(srv).embeddings.create(model="m", input="x")
        assert srv.stats()["by_outcome"] == {"bad_request": 2}


# --- Anthropic messages --------------------------------------------------------------------------


def test_anthropic_system_prompt_stop_and_max_tokens():
    seen: list[FakeRequest] = []

    def responder(req, i):
        seen.append(req)
        return "positive because great STOP trailing words"

    with FakeAPIServer(responder=responder) as srv:
        create = ant(srv).messages.create
        r = create(model="claude-fake", max_tokens=100, system="You label sentiment.",
                   messages=[{"role": "user", "content": [{"type": "text", "text": "great movie"}]}])
        assert r.type == "message" and r.role == "assistant" and r.model == "claude-fake"
        assert r.id.startswith("msg_") and r.content[0].type == "text"
        assert r.content[0].text == "positive because great STOP trailing words"
        assert (r.stop_reason, r.stop_sequence) == ("end_turn", None)
        assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 6)
        assert seen[0].messages == [{"role": "system", "content": "You label sentiment."},
                                    {"role": "user", "content": "great movie"}]
        assert (seen[0].provider, seen[0].max_tokens, seen[0].n) == ("anthropic", 100, 1)
        r = create(model="m", max_tokens=100, messages=MSGS, stop_sequences=["STOP"],
                   system=[{"type": "text", "text": "block system"}])
        assert (r.content[0].text, r.stop_reason, r.stop_sequence) == ("positive because great ", "stop_sequence", "STOP")
        assert seen[-1].messages[0] == {"role": "system", "content": "block system"}
        r = create(model="m", max_tokens=2, messages=MSGS)
        assert (r.content[0].text, r.stop_reason, r.usage.output_tokens) == ("positive because", "max_tokens", 2)


# --- concurrency, latency and counters -----------------------------------------------------------


def sentiment(req: FakeRequest, i: int) -> str:
    return "negative" if "bad" in req.prompt else "positive"


def test_async_clients_concurrency_latency_and_exactly_once_counters():
    reviews = [f"review {i}: {'bad' if i % 3 else 'good'} film" for i in range(128)]

    async def run(srv):
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        sem = asyncio.Semaphore(64)

        async def one(text):
            async with sem:
                r = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
                return r.choices[0].message.content

        answers = await asyncio.gather(*(one(t) for t in reviews))
        await client.close()
        return answers

    with FakeAPIServer(latency=0.2, responder=sentiment) as srv:
        answers = asyncio.run(run(srv))
        stats = srv.stats()
    assert answers == ["negative" if "bad" in t else "positive" for t in reviews]
    # Concurrency is shown by the server's own in-flight count, not by wall time (a loaded machine
    # stretches wall time; scripts/bench_api.py measures it).
    assert stats["max_in_flight"] == 64 and stats["in_flight"] == 0
    keys = {request_key("openai", {"model": "m", "messages": [{"role": "user", "content": t}]}) for t in reviews}
    assert set(stats["successes_per_key"]) == keys and set(stats["successes_per_key"].values()) == {1}
    assert stats["unique_succeeded"] == 128 and stats["repeated_successes"] == 0
    assert stats["requests_after_success"] == 0


def test_async_anthropic_and_repeat_counters():
    async def run(srv):
        client = anthropic.AsyncAnthropic(base_url=srv.base_url, api_key="k", max_retries=0)
        texts = ["bad plot", "good cast", "bad plot"]  # the third repeats a finished request
        out = [await client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": t}])
               for t in texts]
        await client.close()
        return [m.content[0].text for m in out]

    with FakeAPIServer(responder=sentiment) as srv:
        assert asyncio.run(run(srv)) == ["negative", "positive", "negative"]
        stats = srv.stats()
        assert stats["by_provider"] == {"anthropic": 3}
        assert (stats["unique_succeeded"], stats["repeated_successes"], stats["requests_after_success"]) == (2, 1, 1)
        srv.reset()
        assert srv.stats()["requests"] == 0 and srv.stats()["successes_per_key"] == {}


# --- fault injection -----------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_seen_by_client_without_retries(sdk, kind):
    with FakeAPIServer(faults={kind: 1.0}, retry_after=0.25, timeout_hold=5) as srv:
        if sdk == "openai":
            mod, call = openai, lambda: oai(srv, timeout=0.2).chat.completions.create(model="m", messages=MSGS)
        else:
            mod, call = anthropic, lambda: ant(srv, timeout=0.2).messages.create(model="m", max_tokens=9, messages=MSGS)
        expected = {"429": mod.RateLimitError, "500": mod.InternalServerError, "timeout": mod.APITimeoutError,
                    "malformed": ValueError,  # the SDKs raise json.JSONDecodeError for a broken 200 body
                    "drop": mod.APIConnectionError}[kind]
        with pytest.raises(expected) as e:
            call()
        if kind == "429":
            assert e.value.response.headers["retry-after"] == "0.25"
            assert e.value.response.headers["retry-after-ms"] == "250"
        if kind == "drop":
            assert not isinstance(e.value, mod.APITimeoutError)
        deadline = time.time() + 5  # a held "timeout" request is counted once the client hangs up
        while srv.stats()["in_flight"] and time.time() < deadline:
            time.sleep(0.01)
        stats = srv.stats()
        assert stats["by_outcome"] == {kind: 1} and stats["successes"] == 0
        assert stats["by_status"] == ({kind: 1} if kind in ("429", "500") else {"200": 1} if kind == "malformed" else {})


def test_sdk_retries_succeed_under_half_faults():
    # 50% of attempts fail, with kinds the SDKs retry. Seed 0 makes this exact set of requests see
    # 429s, 500s and drops while keeping the SDKs' exponential backoff (0.5 s, 1 s, ...) short.
    faults = {"429": 0.3, "500": 0.1, "drop": 0.1}

    async def run(srv):
        oc = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=20)
        ac = anthropic.AsyncAnthropic(base_url=srv.base_url, api_key="k", max_retries=20)
        calls = [oc.chat.completions.create(model="m", messages=[{"role": "user", "content": f"bad {i}"}])
                 for i in range(8)]
        calls += [ac.messages.create(model="m", max_tokens=3, messages=[{"role": "user", "content": f"ok {i}"}])
                  for i in range(8)]
        out = await asyncio.gather(*calls)
        await oc.close()
        await ac.close()
        return [r.choices[0].message.content for r in out[:8]] + [m.content[0].text for m in out[8:]]

    with FakeAPIServer(faults=faults, retry_after=0.01, seed=0, responder=sentiment) as srv:
        assert asyncio.run(run(srv)) == ["negative"] * 8 + ["positive"] * 8
        stats = srv.stats()
    assert set(stats["by_outcome"]) == {"ok", "429", "500", "drop"}
    assert stats["successes"] == stats["unique_succeeded"] == 16 and stats["repeated_successes"] == 0
    assert stats["requests"] == 16 + stats["sdk_retries"] == sum(stats["by_outcome"].values())


def test_fault_decisions_are_reproducible_per_attempt():
    cfg = Config(faults={"429": 0.2, "500": 0.1, "drop": 0.1}, seed=11)
    draws = [cfg.pick_fault(f"key{k}", a) for k in range(500) for a in range(4)]
    assert draws == [cfg.pick_fault(f"key{k}", a) for k in range(500) for a in range(4)]
    assert abs(draws.count("429") / len(draws) - 0.2) < 0.03 and abs(draws.count(None) / len(draws) - 0.6) < 0.04
    assert draws != [Config(faults=cfg.faults, seed=12).pick_fault(f"key{k}", a) for k in range(500) for a in range(4)]
    with pytest.raises(ValueError):
        Config(faults={"429": 0.7, "500": 0.5}).validate()
    with pytest.raises(ValueError):
        Config(faults={"teapot": 0.1}).validate()

    def outcomes():
        with FakeAPIServer(faults={"429": 0.5}, retry_after=0.001, seed=5) as srv:
            client = oai(srv, max_retries=10)
            for i in range(5):
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
            return srv.stats()["by_outcome"]

    assert outcomes() == outcomes()


def test_client_leaving_during_latency_is_not_a_success():
    with FakeAPIServer(latency=0.3) as srv:
        with pytest.raises(openai.APITimeoutError):
            oai(srv, timeout=0.1).chat.completions.create(model="m", messages=MSGS)
        stats = _wait_for(lambda: (s := srv.stats())["by_outcome"] and s)
    assert stats["by_outcome"] == {"client_gone": 1} and stats["successes"] == 0 and stats["in_flight"] == 0


def test_configure_at_run_time():
    with FakeAPIServer(faults={"500": 1.0}) as srv:
        with pytest.raises(openai.InternalServerError):
            oai(srv).chat.completions.create(model="m", messages=MSGS)
        srv.configure(faults={"500": 0.0}, latency=0.01)
        assert oai(srv).chat.completions.create(model="m", messages=MSGS).choices[0].message.content
        with pytest.raises(ValueError):
            srv.configure(faults={"429": 2.0})


def test_responder_errors_are_loud():
    def broken(req, i):
        raise RuntimeError("boom")

    with FakeAPIServer(responder=broken) as srv:
        with pytest.raises(openai.InternalServerError, match="boom"):
            oai(srv).chat.completions.create(model="m", messages=MSGS)
        assert srv.stats()["by_outcome"] == {"responder_error": 1}


# --- separate process ----------------------------------------------------------------------------


def _http(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as resp:
        return json.loads(resp.read())


def _wait_for(predicate, timeout: float = 5.0):
    deadline = time.time() + timeout
    while not (value := predicate()) and time.time() < deadline:
        time.sleep(0.02)
    return value


def test_subprocess_mode_port_file_stats_config_and_killed_client(tmp_path):
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ladder.testing.fake_api", "--port", "0", "--port-file", str(port_file),
           "--fault-500", "1.0", "--latency", "0.3",
           "--responder", "ladder.testing.fake_api:default_responder"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(lambda: port_file.exists() or server.poll() is not None), "no port file"
        assert server.poll() is None, log.read_text()
        base = f"http://127.0.0.1:{int(port_file.read_text())}"
        client = openai.OpenAI(base_url=base, api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSGS)
        assert _http(base + "/_config", {"faults": {"500": 0}, "latency": 0.0})["faults"] == {"500": 0}
        assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content
        stats = _http(base + "/_stats")
        assert (stats["requests"], stats["successes"], stats["by_status"]) == (2, 1, {"500": 1, "200": 1})

        # A client SIGKILLed while its request is in flight: the server notices, counts no success.
        _http(base + "/_config", {"latency": 0.4})
        body = json.dumps({"model": "m", "messages": MSGS})
        script = (f"import socket,time; s=socket.create_connection(('127.0.0.1',{base.rsplit(':', 1)[1]}));"
                  f"s.sendall(b'POST /v1/chat/completions HTTP/1.1\\r\\nhost: x\\r\\ncontent-length: {len(body)}"
                  f"\\r\\n\\r\\n' + {body.encode()!r}); time.sleep(60)")
        victim = subprocess.Popen([sys.executable, "-c", script])
        assert _wait_for(lambda: _http(base + "/_stats")["in_flight"] == 1)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        stats = _wait_for(lambda: (s := _http(base + "/_stats"))["in_flight"] == 0 and s)
        assert stats["by_outcome"]["client_gone"] == 1 and stats["successes"] == 1
        assert _http(base + "/_reset", {})["ok"] and _http(base + "/_stats")["requests"] == 0
    finally:
        server.terminate()
        server.wait(timeout=5)


# --- Keys, recorded requests, Anthropic's sampling rule ------------------------------------------


def test_a_server_with_a_key_answers_other_keys_401_on_completions_and_model_lists():
    with FakeAPIServer(api_key="sk-right-key-0123") as srv:
        with pytest.raises(openai.AuthenticationError) as e:
            oai(srv).chat.completions.create(model="m", messages=MSGS)
        assert e.value.status_code == 401 and "sk-****-test" not in str(e.value)  # shown masked, like OpenAI
        with pytest.raises(openai.AuthenticationError):
            oai(srv).models.list()
        with pytest.raises(anthropic.AuthenticationError) as e:
            ant(srv).messages.create(model="m", max_tokens=5, messages=MSGS)
        assert e.value.body["error"]["type"] == "authentication_error"
        with pytest.raises(anthropic.AuthenticationError):
            ant(srv).models.list()
        assert srv.stats()["by_outcome"] == {"unauthorized": 2} and srv.requests() == []
        # The right key goes through, with either SDK's way of sending it.
        openai.OpenAI(base_url=srv.base_url, api_key="sk-right-key-0123", max_retries=0).models.list()
        anthropic.Anthropic(base_url=srv.base_url, api_key="sk-right-key-0123", max_retries=0).messages.create(
            model="m", max_tokens=5, messages=MSGS)
        srv.configure(api_key=None)  # and /_config can lift the check
        oai(srv).chat.completions.create(model="m", messages=MSGS)
        assert srv.stats()["successes"] == 2


def test_the_server_records_the_request_bodies_it_received():
    with FakeAPIServer() as srv:
        oai(srv).chat.completions.create(model="m", messages=MSGS, temperature=0.5)
        # This SDK release takes sampling arguments only as extra body keys.
        ant(srv).messages.create(model="c", max_tokens=5, messages=MSGS, extra_body={"top_p": 0.9})
        got = srv.requests()
        assert [r["provider"] for r in got] == ["openai", "anthropic"]
        assert got[0]["body"]["temperature"] == 0.5 and "top_p" not in got[0]["body"]
        assert got[1]["body"]["top_p"] == 0.9 and "temperature" not in got[1]["body"]
        srv.reset()
        assert srv.requests() == []


def test_anthropic_requests_with_temperature_and_top_p_are_refused_like_recent_models():
    with FakeAPIServer() as srv:
        with pytest.raises(anthropic.BadRequestError, match="cannot both be specified"):
            ant(srv).messages.create(model="m", max_tokens=5, messages=MSGS,
                                     extra_body={"temperature": 0.5, "top_p": 0.9})
        ant(srv).messages.create(model="m", max_tokens=5, messages=MSGS, extra_body={"temperature": 0.5})
        oai(srv).chat.completions.create(model="m", messages=MSGS, temperature=0.5, top_p=0.9)  # OpenAI takes both
        assert srv.stats()["successes"] == 2


# --- batch APIs (the happy path, expiry and line errors are in tests/backends/test_batch.py) ----------


def _batch_file(client: openai.OpenAI, ids: list[str]) -> str:
    text = "".join(json.dumps({"custom_id": c, "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "m", "messages": MSGS}}) + "\n" for c in ids)
    return client.files.create(file=("b.jsonl", text.encode()), purpose="batch").id


def test_openai_batch_polls_running_then_completes_and_cancel_leaves_cancelled_lines():
    with FakeAPIServer(responder=fixed("ok")) as srv:
        srv.configure(batch_seconds=0.4)
        client = oai(srv)
        job = client.batches.create(input_file_id=_batch_file(client, ["a", "b"]), endpoint="/v1/chat/completions",
                                    completion_window="24h")
        assert job.status == "validating" and client.batches.retrieve(job.id).status == "in_progress"
        time.sleep(0.45)
        done = client.batches.retrieve(job.id)
        assert done.status == "completed" and done.request_counts.completed == 2 and done.error_file_id is None
        lines = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        assert {x["custom_id"] for x in lines} == {"a", "b"}
        assert all(x["response"]["body"]["choices"][0]["message"]["content"] == "ok" for x in lines)

        other = client.batches.create(input_file_id=_batch_file(client, ["c"]), endpoint="/v1/chat/completions",
                                      completion_window="24h")
        cancelled = client.batches.cancel(other.id)
        assert cancelled.status == "cancelled" and cancelled.output_file_id is None
        (line,) = [json.loads(x) for x in client.files.content(cancelled.error_file_id).text.splitlines()]
        assert line["error"]["code"] == "batch_cancelled" and line["response"] is None
        stats = srv.stats()
    assert stats["successes"] == 2  # the cancelled line never ran
    assert srv.app.batches.counters()["jobs_created"]["openai"] == 2


def test_openai_batch_with_a_duplicate_custom_id_fails_validation():
    with FakeAPIServer() as srv:
        client = oai(srv)
        job = client.batches.create(input_file_id=_batch_file(client, ["a", "a"]), endpoint="/v1/chat/completions",
                                    completion_window="24h")
        assert job.status == "failed" and job.errors.data[0].code == "duplicate_custom_id"
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")


def test_anthropic_batch_results_only_once_ended_and_cancel():
    with FakeAPIServer(responder=fixed("ok")) as srv:
        srv.configure(batch_seconds=60)
        client = ant(srv)
        reqs = [{"custom_id": f"r{i}", "params": {"model": "m", "max_tokens": 5, "messages": MSGS}} for i in range(2)]
        job = client.messages.batches.create(requests=reqs)
        assert job.processing_status == "in_progress" and job.results_url is None
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.create(requests=reqs + reqs[:1])  # duplicate custom_id
        client.messages.batches.cancel(job.id)
        ended = client.messages.batches.retrieve(job.id)
        assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
        assert [r.result.type for r in client.messages.batches.results(job.id)] == ["canceled", "canceled"]
        srv.configure(batch_seconds=0)
        job = client.messages.batches.create(requests=reqs)
        results = list(client.messages.batches.results(job.id))
        assert [r.result.message.content[0].text for r in results] == ["ok", "ok"]
