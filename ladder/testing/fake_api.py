"""A fake OpenAI / Anthropic HTTP server for tests and benchmarks.

It speaks the wire formats of `POST /v1/chat/completions`, `GET /v1/models` (OpenAI) and
`POST /v1/messages` (Anthropic) so the real SDK clients can talk to it over real HTTP on
127.0.0.1, with configurable latency, reproducible fault injection and server-side counters.

In-process (background thread):

    with FakeAPIServer(latency=0.2, faults={"429": 0.1}, responder=my_fn) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x")   # /chat/completions also served
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="x")
        srv.stats(); srv.configure(latency=0); srv.reset()
        srv.app.fine_tuning.polls = 3   # files + fine-tuning jobs: see FineTuningAPI
        srv.configure(batch_seconds=2)   # OpenAI / Anthropic batch jobs: see BatchAPI

As a separate process (for tests that SIGKILL a client and count requests server-side):

    python -m ladder.testing.fake_api --port 0 --port-file PATH --latency 0.2 --fault-429 0.1
    GET /_stats  -> counters as JSON ("batch": jobs created, lines submitted);  POST /_config {"latency": 0, "faults": {"500": 0.2}};  POST /_reset
    GET /_requests -> the completion request bodies received, in order (srv.requests() in-process)

A provider's rate limits: FakeAPIServer(limits={"rpm": 1200, "tpm": 200_000, "mode": "spend"}) (or
--rpm/--tpm/--limit-mode, or /_config {"limits": ...}) puts token buckets in front of the completion
routes, answering 429 with OpenAI's x-ratelimit-* / Anthropic's anthropic-ratelimit-* headers and
Retry-After; rejected requests free ("free") or charged ("spend", OpenAI's documented way). See
limiter.py.

With `api_key` set (FakeAPIServer(api_key=...), --api-key, or /_config), completion and model-list
requests carrying another key get the provider's 401; unset, any key is accepted.

A responder is `fn(request: FakeRequest, index: int) -> str`, called once per sample; the server
then applies stop strings and max_tokens itself, like the real APIs. "Tokens" are whitespace tokens.

Prompt caching (`PromptCache`, per API key and model): an OpenAI prompt whose first 1024+ tokens
(in 128-token blocks) were answered before reports them as `usage.prompt_tokens_details.cached_tokens`;
an Anthropic prompt with `cache_control` breakpoints writes the prefix up to each breakpoint
(cache_creation_input_tokens) or reads it (cache_read_input_tokens) when it was written before.
A prefix is cached once its request is answered (after the latency), as real caches are: requests
already in flight miss it. /_reset clears the caches; /_stats counts cached_tokens and
cache_write_tokens.

Known deviations from the real services: no streaming, tools, images or response_format (unknown
fields are ignored, not rejected); any model name is accepted, and any API key unless `api_key` is
set; an Anthropic request with both temperature and top_p gets the 400 that recent Claude models
(Opus 4.1, Sonnet 4.5 and later) answer, whatever the model name; Retry-After is a
decimal number of seconds (e.g. "0.1", plus retry-after-ms), where real servers send whole seconds;
logprob alternatives are synthetic (" alt1", " alt2", ...); prompt caches never expire, Anthropic's
minimum cacheable prefix is 1024 tokens for every model (really 1024-4096 by model), and a hit is
looked up only at the breakpoints themselves (the real API also tries earlier block boundaries).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import threading
from dataclasses import asdict, replace
from http import HTTPStatus
from typing import Any, Mapping

from ladder.testing.jobs import BatchAPI, FineTuningAPI
from ladder.testing.limiter import Limiter, Limits, request_tokens
from ladder.testing.wire import (  # noqa: F401  (FAULT_KINDS, FakeRequest, count_tokens: the public names)
    FAULT_KINDS, BadRequest, Config, FakeRequest, PromptCache, Reply, Responder, Stats, _digest, _reply,
    anthropic_response, count_tokens, default_responder, error_body, normalize, openai_response, request_key,
    sent_key, unauthorized)

class App:
    """The request handler shared by the in-process and the subprocess server."""

    def __init__(self, config: Config, responder: Responder | None = None, models: tuple[str, ...] = ("fake-model",)):
        self.config = config.validate()
        self.responder = responder or default_responder
        self.models = models
        self.stats = Stats()
        self.fine_tuning = FineTuningAPI()
        self.batches = BatchAPI(self)
        self.prompt_cache = PromptCache()
        self.limiter = Limiter(Limits.of(config.limits))
        self.connections: set[asyncio.Task] = set()

    def configure(self, **changes: Any) -> Config:
        faults = {**self.config.faults, **changes.pop("faults", {})}  # faults merge; the rest replaces
        self.config = replace(self.config, faults=faults, **changes).validate()  # one atomic swap
        self.limiter.set(Limits.of(self.config.limits))
        return self.config

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError,
                ValueError):  # ValueError: an unparsable request line or content-length; just hang up
            pass
        finally:
            self.connections.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request on a keep-alive connection; False means close the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # client closed an idle connection
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            await _send(writer, 411, {"error": "chunked request bodies are not supported"})
            return False
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        path = target.split("?", 1)[0]
        keep = headers.get("connection", "").lower() != "close"
        if path.startswith("/v1/"):
            path = path[3:]  # serve with and without /v1, so one base_url fits both SDKs
        if path in ("/chat/completions", "/messages") and method == "POST":
            return await self._completion("openai" if path == "/chat/completions" else "anthropic",
                                          headers, raw, reader, writer) and keep
        if path.startswith(("/batches", "/messages/batches")) or re.fullmatch(r"/files/[^/]+/content", path):
            await _send_raw(writer, *self.batches.handle(method, path, headers, raw))
            return keep
        if path.startswith(("/files", "/fine_tuning/")):
            await _send(writer, *self.fine_tuning.handle(method, path, headers, raw))
            return keep
        if path == "/models" and method == "GET":
            anthropic = "anthropic-version" in headers
            if not self._authorized(headers):
                await _send_raw(writer, *unauthorized("anthropic" if anthropic else "openai", sent_key(headers)))
                return keep
            await _send(writer, 200, self._models_body(anthropic=anthropic))
        elif path == "/_requests" and method == "GET":
            await _send(writer, 200, self.stats.received_bodies())
        elif path == "/_stats" and method == "GET":
            await _send(writer, 200, {**self.stats.snapshot(), "batch": self.batches.counters()})
        elif path == "/_reset" and method == "POST":
            self.stats.reset()
            self.batches.reset()
            self.prompt_cache.reset()
            self.limiter.reset()
            await _send(writer, 200, {"ok": True})
        elif path == "/_config" and method in ("GET", "POST"):
            try:
                cfg = self.configure(**json.loads(raw)) if method == "POST" and raw else self.config
                await _send(writer, 200, {**asdict(cfg), "api_key": "***" if cfg.api_key else None})
            except (ValueError, TypeError) as e:
                await _send(writer, 400, {"error": str(e)})
        else:
            provider = "anthropic" if "anthropic-version" in headers else "openai"
            await _send(writer, 404, error_body(provider, 404, f"unknown route {method} {target}", "0"))
        return keep

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return self.config.api_key is None or sent_key(headers) == self.config.api_key

    def _models_body(self, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                    for m in self.models]
            return {"data": data, "has_more": False, "first_id": self.models[0], "last_id": self.models[-1]}
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "ladder"}
                                           for m in self.models]}

    async def _completion(self, provider: str, headers: Mapping[str, str], raw: bytes,
                          reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self.stats.begin(provider, headers)
        key, outcome, reply = None, "cancelled", None
        try:
            if self._authorized(headers):
                key, outcome, reply = await self._attempt(provider, raw, reader, sent_key(headers))
            else:
                outcome, reply = "unauthorized", unauthorized(provider, sent_key(headers))
        finally:
            # Count before replying: a client holding its answer must already see it in stats().
            self.stats.end(outcome, reply[0] if reply else None, key)
        if reply is None:
            return False  # hang up without a response (drop, timeout, client gone)
        await _send_raw(writer, *reply)
        return True

    async def _attempt(self, provider: str, raw: bytes, reader: asyncio.StreamReader,
                       headers_key: str = "") -> tuple[str | None, str, Reply | None]:
        """Decide one attempt: -> (request key, outcome, reply or None to hang up)."""
        cfg = self.config  # one config per attempt, even if /_config changes it meanwhile
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            key = request_key(provider, body)
            self.stats.received(provider, body)
            attempt = self.stats.attempt(key)
            req = normalize(provider, body, key)
            # Looked up on arrival, stored once answered: requests in flight meanwhile miss it.
            read, written, prefixes = self.prompt_cache.lookup(provider, body, f"{headers_key}|{req.model}")
        except (ValueError, BadRequest) as e:  # json.JSONDecodeError is a ValueError
            return None, "bad_request", _reply(400, error_body(provider, 400, str(e), "0"))
        rid = _digest(key, attempt)[:24]
        admitted, limit_headers = self.limiter.admit(provider, request_tokens(
            sum(count_tokens(m["content"]) for m in req.messages), req.max_tokens, req.n))
        if not admitted:  # the limiter answers at once, before any fault or work
            return key, "rate_limited", _reply(429, error_body(provider, 429, "Rate limit reached for requests "
                                                               "(fake limiter)", rid), limit_headers)
        fault = cfg.pick_fault(key, attempt)
        if fault == "429":  # rate limiters answer at once, before doing any work
            retry = {"retry-after": f"{cfg.retry_after:g}", "retry-after-ms": str(round(cfg.retry_after * 1000))}
            return key, fault, _reply(429, error_body(provider, 429, "Rate limit reached (injected)", rid), retry)
        if fault == "timeout":  # hold until the client gives up (EOF) or timeout_hold passes, then hang up
            try:
                await asyncio.wait_for(reader.read(), cfg.timeout_hold)
            except asyncio.TimeoutError:
                pass
            return key, fault, None
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        if reader.at_eof():  # the client went away while we "generated": nothing is delivered
            return key, "client_gone", None
        if fault == "drop":
            return key, fault, None
        if fault == "500":
            return key, fault, _reply(500, error_body(provider, 500, "The server had an error (injected)", rid))
        try:  # the responder runs on the event loop, so it must be quick
            texts = [self.responder(req, i) for i in range(req.n)]
        except Exception as e:  # a broken test responder should be loud, not a hang
            return key, "responder_error", _reply(500, error_body(provider, 500, f"responder raised {e!r}", rid))
        self.prompt_cache.store(prefixes)
        self.stats.cache(read, written)
        if provider == "anthropic":
            payload = anthropic_response(req, texts, rid, (read, written))
        else:
            payload = openai_response(req, texts, body, rid, (read, written))
        if fault == "malformed":  # a 200 whose JSON is cut in half
            status, data, headers = _reply(200, payload)
            return key, fault, (status, data[: len(data) // 2], headers)
        return key, "ok", _reply(200, payload, {"request-id" if provider == "anthropic" else "x-request-id": rid,
                                                **limit_headers})


async def _send(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
    await _send_raw(writer, *_reply(status, payload))


async def _send_raw(writer: asyncio.StreamWriter, status: int, data: bytes, headers: Mapping[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"content-length: {len(data)}",
             "server: ladder-fake-api"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


async def _start(app: App, host: str, port: int) -> asyncio.AbstractServer:
    # A large backlog so bursts of 64+ new connections are never refused.
    return await asyncio.start_server(app.handle, host, port, backlog=2048, limit=2**20)


class FakeAPIServer:
    """The fake API on a background thread; use as a context manager."""

    def __init__(self, *, latency: float = 0.0, faults: Mapping[str, float] | None = None,
                 responder: Responder | None = None, retry_after: float = 0.1, timeout_hold: float = 30.0,
                 seed: int = 0, host: str = "127.0.0.1", port: int = 0, models: tuple[str, ...] = ("fake-model",),
                 api_key: str | None = None, limits: Mapping[str, Any] | None = None):
        config = Config(latency, dict(faults or {}), retry_after, timeout_hold, seed, api_key,
                        limits=dict(limits) if limits else None)
        self.app = App(config, responder, models)
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Root URL; both SDKs work with it (OpenAI routes are served with and without /v1)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    def stats(self) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset(self) -> None:
        self.app.stats.reset()
        self.app.batches.reset()
        self.app.prompt_cache.reset()
        self.app.limiter.reset()

    def requests(self) -> list[dict[str, Any]]:
        """The completion request bodies received since the last reset: [{"provider", "body"}]."""
        return self.app.stats.received_bodies()

    def configure(self, **changes: Any) -> Config:
        """Change latency / faults / retry_after / timeout_hold / seed; faults merge into the old ones."""
        return self.app.configure(**changes)

    def start(self) -> FakeAPIServer:
        ready: list[Any] = []
        started = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                server = loop.run_until_complete(_start(self.app, self.host, self.port))
            except BaseException as e:  # surface bind errors in the caller's thread
                ready.append(e)
                started.set()
                return
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown(server))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-api", daemon=True)
        self._thread.start()
        started.wait()
        if ready:
            raise ready[0]
        return self

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        server.close()
        tasks = list(self.app.connections)
        for task in tasks:  # held "timeout" requests and idle keep-alive connections
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def stop(self) -> None:
        if self._thread and self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeAPIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _load_responder(spec: str) -> Responder:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ladder.testing.fake_api", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the port here (atomically) once listening")
    p.add_argument("--latency", type=float, default=0.0)
    for kind in FAULT_KINDS:
        p.add_argument(f"--fault-{kind}", type=float, default=0.0, metavar="RATE")
    p.add_argument("--retry-after", type=float, default=0.1)
    p.add_argument("--timeout-hold", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key", help="accept only this key (others get a 401); default: any key")
    p.add_argument("--batch-seconds", type=float, default=0.0, help="a batch job ends this long after creation")
    p.add_argument("--batch-line-errors", type=float, default=0.0, metavar="RATE")
    p.add_argument("--batch-expire", type=float, default=0.0, metavar="RATE")
    p.add_argument("--rpm", type=float, help="rate limit: requests per minute (see limiter.py)")
    p.add_argument("--tpm", type=float, help="rate limit: tokens per minute")
    p.add_argument("--limit-mode", choices=["free", "spend"], default="spend",
                   help="whether a rejected request still spends the limit (spend: OpenAI's documented way)")
    p.add_argument("--limit-retry-after", type=float, help="a fixed Retry-After on every 429 of the limiter")
    p.add_argument("--limit-no-headers", action="store_true", help="send no x-ratelimit-* headers")
    p.add_argument("--responder", help="module:function with signature (FakeRequest, index) -> str")
    p.add_argument("--models", default="fake-model", help="comma-separated names for GET /v1/models")
    a = p.parse_args(argv)
    faults = {k: getattr(a, f"fault_{k}") for k in FAULT_KINDS if getattr(a, f"fault_{k}")}
    limits = ({"rpm": a.rpm, "tpm": a.tpm, "mode": a.limit_mode, "retry_after": a.limit_retry_after,
               "headers": not a.limit_no_headers} if a.rpm or a.tpm else None)
    try:
        config = Config(a.latency, faults, a.retry_after, a.timeout_hold, a.seed, a.api_key, a.batch_seconds,
                        a.batch_line_errors, a.batch_expire, limits).validate()
    except ValueError as e:
        p.error(str(e))
    app = App(config, _load_responder(a.responder) if a.responder else None, tuple(a.models.split(",")))

    async def serve() -> None:
        server = await _start(app, a.host, a.port)
        port = server.sockets[0].getsockname()[1]
        if a.port_file:  # write then rename, so a reader never sees an empty or partial file
            tmp = f"{a.port_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(str(port))
            os.replace(tmp, a.port_file)
        print(f"fake API listening on http://{a.host}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
