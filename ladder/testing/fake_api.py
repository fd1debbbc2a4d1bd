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
import hashlib
import importlib
import json
import os
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from http import HTTPStatus
from typing import Any, Callable, Mapping

FAULT_KINDS = ("429", "500", "timeout", "malformed", "drop")
MAX_RECORDED = 100_000  # request bodies kept for GET /_requests; later ones are not recorded
_TOKEN = re.compile(r"\s*\S+")  # a token keeps its leading whitespace, so "".join(tokens) == text
_WORDS = ("the answer is likely yes no maybe because data shows a clear signal of noise in "
          "this example result value positive negative neutral").split()


@dataclass
class FakeRequest:
    """A provider-independent view of one completion request."""

    provider: str  # "openai" | "anthropic"
    model: str
    messages: list[dict[str, str]]  # [{"role", "content"}]; Anthropic's system prompt comes first
    temperature: float
    top_p: float
    max_tokens: int | None
    stop: list[str]
    n: int
    seed: int | None
    key: str  # request_key(provider, body): the same key the counters use

    @property
    def prompt(self) -> str:
        """The last user message: what most responders want to look at."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


Responder = Callable[[FakeRequest, int], str]
Reply = tuple[int, bytes, Mapping[str, str]]  # status, body, headers


def default_responder(req: FakeRequest, index: int) -> str:
    """Deterministic filler text: samples differ by index unless temperature is 0."""
    sample = index if req.temperature > 0 else 0
    rnd = random.Random(_digest(req.model, req.messages, sample, req.seed))
    return " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(4, 12)))


def request_key(provider: str, body: Mapping[str, Any]) -> str:
    """Hash of the canonical JSON request body; identical requests (and retries) share a key."""
    return _digest(provider, body)[:32]


def _digest(*parts: Any) -> str:
    canon = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()


def _unit(*parts: Any) -> float:
    """A reproducible uniform number in [0, 1) derived from `parts`."""
    return int(_digest(*parts)[:13], 16) / 16**13


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass
class Config:
    """Everything POST /_config may change at run time."""

    latency: float = 0.0  # seconds added to every answered request (not to 429s, which are instant)
    faults: dict[str, float] = field(default_factory=dict)  # kind -> probability per attempt
    retry_after: float = 0.1  # seconds, sent with every 429
    timeout_hold: float = 30.0  # a "timeout" holds the request this long (or until the client leaves)
    seed: int = 0  # fault decisions are a pure function of (seed, request key, attempt number)
    api_key: str | None = None  # when set, requests with another key get a 401
    batch_seconds: float = 0.0  # a batch job ends this long after it was created (polls before see it running)
    batch_line_errors: float = 0.0  # probability per attempt that a batch line fails (HTTP 500 / "errored")
    batch_expire: float = 0.0  # probability per attempt that a line is left unfinished: the job then expires

    def validate(self) -> Config:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected some of {FAULT_KINDS}")
        if any(not 0 <= r <= 1 for r in self.faults.values()) or sum(self.faults.values()) > 1 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1, got {self.faults}")
        if self.latency < 0 or self.retry_after < 0 or self.timeout_hold < 0 or self.batch_seconds < 0:
            raise ValueError("latency, retry_after, timeout_hold and batch_seconds must be >= 0")
        if not (0 <= self.batch_line_errors <= 1 and 0 <= self.batch_expire <= 1):
            raise ValueError("batch_line_errors and batch_expire must be in [0, 1]")
        return self

    def pick_fault(self, key: str, attempt: int) -> str | None:
        # Per attempt, not per request: the k-th retry of a request gets a fresh, reproducible draw.
        u, acc = _unit(self.seed, key, attempt), 0.0
        for kind in FAULT_KINDS:
            acc += self.faults.get(kind, 0.0)
            if u < acc:
                return kind
        return None


class Stats:
    """Server-side counters. Thread-safe: the loop thread writes, test threads read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter; attempt numbers restart too, so fault sequences replay from the start."""
        with self._lock:
            self.requests = 0
            self.by_status: dict[str, int] = {}
            self.by_outcome: dict[str, int] = {}
            self.by_provider: dict[str, int] = {}
            self.auth = {"bearer": 0, "x-api-key": 0, "none": 0}
            self.sdk_retries = 0  # attempts the SDK itself labelled as retries (x-stainless-retry-count > 0)
            self.attempts: dict[str, int] = {}
            self.successes: dict[str, int] = {}
            self.requests_after_success = 0  # requests for a key that had already been answered
            self.in_flight = self.max_in_flight = 0
            self.cached_tokens = self.cache_write_tokens = 0  # prompt-cache reads and writes reported
            self.bodies: list[dict[str, Any]] = []  # completion requests received, in order

    def received(self, provider: str, body: Any) -> None:
        with self._lock:
            if len(self.bodies) < MAX_RECORDED:
                self.bodies.append({"provider": provider, "body": body})

    def received_bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.bodies)

    def begin(self, provider: str, headers: Mapping[str, str]) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.by_provider[provider] = self.by_provider.get(provider, 0) + 1
            # Only whether a credential was sent is recorded, never its value.
            bearer = headers.get("authorization", "").lower().startswith("bearer ")
            self.auth["bearer" if bearer else "x-api-key" if headers.get("x-api-key") else "none"] += 1
            if headers.get("x-stainless-retry-count", "0") not in ("", "0"):
                self.sdk_retries += 1

    def attempt(self, key: str) -> int:
        """Count an attempt at `key`; returns its 0-based attempt number."""
        with self._lock:
            n = self.attempts.get(key, 0)
            self.attempts[key] = n + 1
            if self.successes.get(key):
                self.requests_after_success += 1
            return n

    def cache(self, read: int, written: int) -> None:
        with self._lock:
            self.cached_tokens += read
            self.cache_write_tokens += written

    def end(self, outcome: str, status: int | None, key: str | None = None) -> None:
        with self._lock:
            self.in_flight -= 1
            self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
            if status is not None:
                self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
            if outcome == "ok" and key is not None:
                self.successes[key] = self.successes.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "successes": sum(self.successes.values()),
                "by_status": dict(self.by_status),
                "by_outcome": dict(self.by_outcome),
                "by_provider": dict(self.by_provider),
                "auth": dict(self.auth),
                "sdk_retries": self.sdk_retries,
                "unique_requests": len(self.attempts),
                "unique_succeeded": len(self.successes),
                "repeated_successes": sum(c - 1 for c in self.successes.values()),
                "requests_after_success": self.requests_after_success,
                "max_attempts_per_key": max(self.attempts.values(), default=0),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "successes_per_key": dict(self.successes),
            }


class BadRequest(Exception):
    pass


def _text(content: Any) -> str:
    """Message content as plain text: a string, or the text parts of a list of content blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
    raise BadRequest("content must be a string or a list of content blocks")


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer")
    return value


def normalize(provider: str, body: Mapping[str, Any], key: str) -> FakeRequest:
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        raise BadRequest("'model' (string) and 'messages' (array) are required")
    msgs = []
    for m in body["messages"]:
        if not isinstance(m, dict) or "role" not in m:
            raise BadRequest("each message needs a 'role'")
        msgs.append({"role": m["role"], "content": _text(m.get("content"))})
    if provider == "anthropic":
        if "max_tokens" not in body:
            raise BadRequest("max_tokens: Field required")
        if body.get("temperature") is not None and body.get("top_p") is not None:
            raise BadRequest("`temperature` and `top_p` cannot both be specified for this model. "
                             "Please use only one.")
        if body.get("system"):
            msgs.insert(0, {"role": "system", "content": _text(body["system"])})
        stop, n, seed = body.get("stop_sequences") or [], 1, None
        max_tokens = _int_or_none(body["max_tokens"], "max_tokens")
    else:
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        n, seed = body.get("n", 1), body.get("seed")
        n = 1 if n is None else n
        max_tokens = body.get("max_completion_tokens")
        max_tokens = _int_or_none(body.get("max_tokens") if max_tokens is None else max_tokens, "max_tokens")
        if not isinstance(n, int) or n < 1:
            raise BadRequest("n must be a positive integer")
        if body.get("top_logprobs") and not body.get("logprobs"):
            raise BadRequest("logprobs must be set to true when top_logprobs is used")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    return FakeRequest(provider, body["model"], msgs, 1.0 if temperature is None else float(temperature),
                       1.0 if top_p is None else float(top_p), max_tokens, stop, n, seed, key)


def finish(text: str, stop: list[str], max_tokens: int | None) -> tuple[str, str, str | None]:
    """Apply stop strings and max_tokens like a server: -> (text, "stop"|"length"|"end", matched stop)."""
    limit = len(text)
    if max_tokens is not None:
        ends = [m.end() for m in _TOKEN.finditer(text)]
        if len(ends) > max_tokens:
            limit = ends[max_tokens - 1] if max_tokens else 0
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if hits and min(hits)[0] < limit:
        pos, s = min(hits)
        return text[:pos], "stop", s
    if limit < len(text):
        return text[:limit], "length", None
    return text, "end", None


def _logprobs(text: str, top: int, salt: str) -> dict[str, Any]:
    content = []
    for i, tok in enumerate(_TOKEN.findall(text)):
        lp = -round(2 * _unit(salt, i), 4)  # the chosen token is always the most likely one
        alts = [(tok, lp)] + [(f" alt{j}", lp - j - 0.5) for j in range(1, top)]
        content.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()),
                        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())}
                                         for t, p in alts[:top]]})
    return {"content": content, "refusal": None}


def openai_response(req: FakeRequest, texts: list[str], body: Mapping[str, Any], rid: str,
                    cache: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    choices, completion_tokens = [], 0
    for i, raw in enumerate(texts):
        text, why, _ = finish(raw, req.stop, req.max_tokens)
        completion_tokens += count_tokens(text)
        lp = _logprobs(text, body.get("top_logprobs") or 0, f"{req.key}/{i}") if body.get("logprobs") else None
        choices.append({"index": i, "finish_reason": "length" if why == "length" else "stop", "logprobs": lp,
                        "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []}})
    prompt_tokens = sum(count_tokens(m["content"]) for m in req.messages)
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model, "choices": choices, "service_tier": "default",
            "system_fingerprint": "fp_ladder_fake",
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cache[0], "audio_tokens": 0}}}


def anthropic_response(req: FakeRequest, texts: list[str], rid: str,
                       cache: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    text, why, matched = finish(texts[0], req.stop, req.max_tokens)
    reason = {"stop": "stop_sequence", "length": "max_tokens", "end": "end_turn"}[why]
    read, written = cache  # input_tokens counts only what is neither read from nor written to the cache
    total = sum(count_tokens(m["content"]) for m in req.messages)
    return {"id": f"msg_{rid}", "type": "message", "role": "assistant", "model": req.model,
            "content": [{"type": "text", "text": text}], "stop_reason": reason, "stop_sequence": matched,
            "usage": {"input_tokens": total - read - written,
                      "output_tokens": count_tokens(text), "cache_creation_input_tokens": written,
                      "cache_read_input_tokens": read, "service_tier": "standard"}}


class PromptCache:
    """The providers' prompt caches, in memory, keyed by API key + model + prompt prefix.

    A prompt is a stream of whitespace tokens (message by message; a message's first token carries
    its role, so equal words in other turns do not match). OpenAI: prefixes of 1024, 1152, ...
    tokens (128-token blocks) are cached by themselves; a request reads the longest one seen.
    Anthropic: only prefixes ending at a `cache_control` block of at least 1024 tokens; a request
    reads the longest breakpoint prefix seen and writes the rest up to its last breakpoint."""

    MIN, BLOCK = 1024, 128

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: set[str] = set()

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    def lookup(self, provider: str, body: Mapping[str, Any], scope: str) -> tuple[int, int, list[str]]:
        """(tokens read, tokens written, prefix digests to store once the request is answered)."""
        tokens, marks = _prompt_stream(provider, body)
        if provider == "anthropic":
            cuts = sorted({m for m in marks if m >= self.MIN})
        else:
            cuts = list(range(self.MIN, len(tokens) + 1, self.BLOCK))
        if not cuts:
            return 0, 0, []
        digests, h, done = [], hashlib.blake2b(scope.encode(), digest_size=16), 0
        for cut in cuts:
            for tok in tokens[done:cut]:
                h.update(tok.encode() + b"\x01")
            done = cut
            digests.append(h.copy().hexdigest())
        with self._lock:
            read = max((c for c, d in zip(cuts, digests) if d in self.seen), default=0)
        written = 0 if provider == "openai" else cuts[-1] - read
        return read, written, digests

    def store(self, digests: list[str]) -> None:
        with self._lock:
            self.seen.update(digests)


def _prompt_stream(provider: str, body: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """(the prompt's tokens, role-tagged; token counts at the end of each block with cache_control)."""
    tokens: list[str] = []
    marks: list[int] = []
    turns = list(body.get("messages") or [])
    if provider == "anthropic" and body.get("system"):
        turns.insert(0, {"role": "system", "content": body["system"]})
    for m in turns:
        content = m.get("content")
        blocks = [{"text": content}] if content is None or isinstance(content, str) else content
        text, start = "", len(tokens)
        for block in blocks:
            text += block.get("text", "") if isinstance(block, dict) else ""
            if isinstance(block, dict) and block.get("cache_control"):
                marks.append(start + count_tokens(text))
        words = text.split()
        if words:
            words[0] = f"<{m.get('role')}>{words[0]}"
        tokens += words
    return tokens, marks


_OPENAI_ERRORS = {400: "invalid_request_error", 404: "invalid_request_error", 429: "requests", 500: "server_error"}
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                     429: "rate_limit_error", 500: "api_error"}


def sent_key(headers: Mapping[str, str]) -> str:
    """The API key a request carries: OpenAI's bearer token or Anthropic's x-api-key."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")


def unauthorized(provider: str, key: str) -> Reply:
    """The provider's 401; like OpenAI's, the message shows the start and end of the key."""
    shown = f"{key[:3]}****{key[-4:]}" if len(key) > 8 else "****"
    message = ("invalid x-api-key" if provider == "anthropic" else
               f"Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com.")
    return _reply(401, error_body(provider, 401, message, "0"))


def error_body(provider: str, status: int, message: str, rid: str) -> dict[str, Any]:
    if provider == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{rid}"}
    code = {429: "rate_limit_exceeded", 404: "unknown_url", 401: "invalid_api_key"}.get(status)
    return {"error": {"message": message, "type": _OPENAI_ERRORS.get(status, "server_error"),
                      "param": None, "code": code}}


class FineTuningAPI:
    """OpenAI's files and fine-tuning jobs, in memory: enough for ladder's sft stage and its tests.

    POST /v1/files (multipart: purpose, file) stores a file. POST /v1/fine_tuning/jobs creates a job
    in status validating_files (hyperparameters from `method.supervised` or the older top-level
    `hyperparameters`; "auto" resolves to 3 epochs, batch 1, multiplier 2). Each GET
    /v1/fine_tuning/jobs/{id} is one poll: "running" until the `polls`-th poll, which finds it
    "succeeded" with fine_tuned_model "ft:<base>:ladder:<suffix>:<job id>" — or "failed" (error code
    invalid_training_file) when the file is not chat JSONL with at least 10 examples ending on an
    assistant message. `calls` counts requests per route, so a test can see a resumed run create
    nothing new. Deviations: no job listing, events, checkpoints or cancellation; no file content route.
    """

    def __init__(self, polls: int = 2):
        self.polls = polls
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polled: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()  # the loop thread writes, test threads read

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
        job = re.fullmatch(r"/fine_tuning/jobs/([A-Za-z0-9_-]+)", path)
        route = "GET /fine_tuning/jobs/{id}" if job else f"{method} {path}"
        with self._lock:
            self.calls[route] = self.calls.get(route, 0) + 1
            try:
                if route == "POST /files":
                    return 200, self._upload(headers, raw)
                if route == "POST /fine_tuning/jobs":
                    return 200, self._create(raw)
                if job and method == "GET":
                    return self._poll(job.group(1))
            except BadRequest as e:
                return 400, error_body("openai", 400, str(e), "0")
        return 404, error_body("openai", 404, f"unknown route {method} {path}", "0")

    def _upload(self, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        from email import policy
        from email.parser import BytesParser

        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise BadRequest("POST /v1/files wants multipart/form-data")
        form = BytesParser(policy=policy.HTTP).parsebytes(f"content-type: {ctype}\r\n\r\n".encode("latin-1") + raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in form.iter_parts()}
        if "file" not in parts or "purpose" not in parts:
            raise BadRequest("'file' and 'purpose' are required")
        purpose = parts["purpose"].get_payload(decode=True).decode()
        data = parts["file"].get_payload(decode=True) or b""
        fid = "file-" + _digest("file", len(self.files), data)[:24]
        self.contents[fid] = data
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                           "filename": parts["file"].get_filename() or "upload", "purpose": purpose,
                           "status": "processed"}
        return self.files[fid]

    def _create(self, raw: bytes) -> dict[str, Any]:
        body = json.loads(raw or b"{}")
        if not isinstance(body.get("model"), str) or not isinstance(body.get("training_file"), str):
            raise BadRequest("'model' and 'training_file' (strings) are required")
        file = self.files.get(body["training_file"])
        if file is None or file["purpose"] != "fine-tune":
            raise BadRequest(f"invalid training_file: {body['training_file']} (not a fine-tune file)")
        given = ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters") \
            or body.get("hyperparameters") or {}
        auto = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
        hyper = {k: auto[k] if given.get(k, "auto") == "auto" else given[k] for k in auto}
        jid = "ftjob-" + _digest("job", len(self.jobs), body)[:24]
        self.jobs[jid] = {
            "id": jid, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
            "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper, "model": body["model"],
            "organization_id": "org-ladder", "result_files": [], "seed": body.get("seed") or 0,
            "status": "validating_files", "trained_tokens": None, "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "metadata": body.get("metadata"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "suffix": body.get("suffix"),
        }
        self.polled[jid] = 0
        return self.jobs[jid]

    def _poll(self, jid: str) -> tuple[int, Any]:
        job = self.jobs.get(jid)
        if job is None:
            return 404, error_body("openai", 404, f"no fine-tuning job {jid}", "0")
        self.polled[jid] += 1
        if job["status"] in ("validating_files", "running"):
            problem, tokens = _check_chat_jsonl(self.contents[job["training_file"]])
            if problem:
                job.update(status="failed", finished_at=int(time.time()),
                           error={"code": "invalid_training_file", "message": problem, "param": "training_file"})
            elif self.polled[jid] >= self.polls:
                job.update(status="succeeded", finished_at=int(time.time()),
                           trained_tokens=tokens * job["hyperparameters"]["n_epochs"],
                           fine_tuned_model=f"ft:{job['model']}:ladder:{job['suffix'] or ''}:{jid}")
            else:
                job["status"] = "running"
        return 200, job


def _check_chat_jsonl(data: bytes) -> tuple[str | None, int]:
    """(what is wrong with a chat fine-tuning file or None, its whitespace-token count)."""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    tokens = 0
    for i, line in enumerate(lines, 1):
        try:
            msgs = json.loads(line)["messages"]
            assert isinstance(msgs, list) and msgs and msgs[-1]["role"] == "assistant"
            tokens += sum(count_tokens(m["content"]) for m in msgs)
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"line {i}: expected {{\"messages\": [..., {{\"role\": \"assistant\", ...}}]}}", 0
    if len(lines) < 10:
        return f"training file has {len(lines)} example(s), must have at least 10", 0
    return None, tokens


def _rfc3339(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class BatchAPI:
    """OpenAI's Batch API and Anthropic's Message Batches, in memory, answered by the same responder
    as the completion routes.

    OpenAI: POST /v1/files (multipart, purpose "batch"; FineTuningAPI's file store) with JSONL lines
    {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}; POST /v1/batches
    {input_file_id, endpoint, completion_window: "24h"}; GET /v1/batches/{id}; POST
    /v1/batches/{id}/cancel; GET /v1/files/{id}/content for the output file (lines whose request
    got a 200: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null})
    and the error file (other statuses, and {"response": null, "error": {"code": "batch_expired" |
    "batch_cancelled", ...}} for lines never run). A file with a duplicate custom_id or a line for
    another endpoint makes the job "failed" with `errors`.
    Anthropic: POST /v1/messages/batches {"requests": [{"custom_id", "params"}]}; GET
    /v1/messages/batches/{id}; POST .../{id}/cancel; GET .../{id}/results (its `results_url`) as
    JSONL {"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"} |
    {"type": "expired"} | {"type": "canceled"}}.

    A job stays in progress until `Config.batch_seconds` after its creation (the config at the time
    of the poll), then every line runs at once: each line is one attempt in the server's counters
    (requests, successes, requests_after_success, /_requests), so a test can see that no request was
    answered twice. Per attempt, with `batch_expire` a line is left unfinished (the job then ends
    "expired" with the other lines' results) and with `batch_line_errors` it fails with a 500.
    `counters()` (in GET /_stats as "batch") counts jobs, lines and calls per route.
    Deviations: no batch listing, no /v1/responses or embeddings endpoints, no 24 h expiry of its own.
    """

    def __init__(self, app: App):
        self.app = app
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # job id -> [(custom_id, body)]
        self.results: dict[str, bytes] = {}  # anthropic job id -> results JSONL
        self.created: dict[str, float] = {}
        self.headers: dict[str, Mapping[str, str]] = {}
        self.reset()

    def reset(self) -> None:
        """Zero the counters (jobs and files stay)."""
        self.calls = {}
        self.jobs_created = {"openai": 0, "anthropic": 0}
        self.lines_submitted = {"openai": 0, "anthropic": 0}

    def counters(self) -> dict[str, Any]:
        return {"jobs_created": dict(self.jobs_created), "lines_submitted": dict(self.lines_submitted),
                "calls": dict(self.calls)}

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        provider = "anthropic" if path.startswith("/messages/") else "openai"
        route = re.sub(r"/(batch_|msgbatch_|file-)[A-Za-z0-9_-]+", "/{id}", path)
        self.calls[f"{method} {route}"] = self.calls.get(f"{method} {route}", 0) + 1
        if not self.app._authorized(headers):
            return unauthorized(provider, sent_key(headers))
        m = re.fullmatch(r"/(?:messages/)?batches/([A-Za-z0-9_-]+)(/cancel|/results)?", path)
        try:
            if path == "/batches" and method == "POST":
                return _reply(200, self._openai_create(json.loads(raw or b"{}"), headers))
            if path == "/messages/batches" and method == "POST":
                return _reply(200, self._anthropic_create(json.loads(raw or b"{}"), headers))
            f = re.fullmatch(r"/files/([A-Za-z0-9_-]+)/content", path)
            if f and method == "GET":
                data = self.app.fine_tuning.contents.get(f.group(1))
                if data is None:
                    return _reply(404, error_body("openai", 404, f"No such File object: {f.group(1)}", "0"))
                return 200, data, {"content-type": "application/octet-stream"}
            if m and m.group(1) in self.jobs:
                jid, action = m.group(1), m.group(2)
                if action == "/cancel" and method == "POST":
                    self._finish(jid, cancel=True)
                elif action is None and method == "GET":
                    self._tick(jid)
                elif action == "/results" and method == "GET" and provider == "anthropic":
                    if jid not in self.results:
                        return _reply(400, error_body(provider, 400, f"batch {jid} has not ended yet", "0"))
                    return 200, self.results[jid], {"content-type": "application/binary"}
                else:
                    return _reply(404, error_body(provider, 404, f"unknown route {method} {path}", "0"))
                return _reply(200, self._view(jid, headers))
        except (ValueError, BadRequest) as e:
            return _reply(400, error_body(provider, 400, str(e), "0"))
        return _reply(404, error_body(provider, 404, f"no such batch or route: {method} {path}", "0"))

    # -- creation ----------------------------------------------------------------------------------

    def _new(self, provider: str, job: dict[str, Any], lines: list[tuple[str, dict[str, Any]]],
             headers: Mapping[str, str]) -> dict[str, Any]:
        self.jobs[job["id"]] = job
        self.lines[job["id"]] = lines
        self.created[job["id"]] = time.monotonic()
        self.headers[job["id"]] = dict(headers)
        self.jobs_created[provider] += 1
        self.lines_submitted[provider] += len(lines)
        return job

    def _openai_create(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        fid = body.get("input_file_id")
        file = self.app.fine_tuning.files.get(fid) if isinstance(fid, str) else None
        if file is None or file["purpose"] != "batch":
            raise BadRequest(f"invalid input_file_id: {fid!r} (not a file uploaded with purpose 'batch')")
        if body.get("completion_window") != "24h":
            raise BadRequest("completion_window must be '24h'")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise BadRequest(f"this fake serves batches for /v1/chat/completions only, not {endpoint!r}")
        now = int(time.time())
        jid = "batch_" + _digest("batch", len(self.jobs), fid)[:24]
        job = {"id": jid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
               "completion_window": "24h", "status": "validating", "output_file_id": None,
               "error_file_id": None, "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
               "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
               "cancelling_at": None, "cancelled_at": None, "model": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        lines, problems, seen = [], [], set()
        for i, text in enumerate(self.app.fine_tuning.contents[fid].decode("utf-8", "replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                cid, url = line["custom_id"], line["url"]
                assert isinstance(cid, str) and isinstance(line["body"], dict) and line["method"] == "POST"
            except (ValueError, KeyError, TypeError, AssertionError):
                problems.append({"code": "invalid_request", "line": i, "param": None,
                                 "message": "each line needs custom_id, method POST, url and a body object"})
                continue
            if url != endpoint:
                problems.append({"code": "mismatched_endpoint", "line": i, "param": "url",
                                 "message": f"url {url!r} does not match the batch endpoint {endpoint}"})
            if cid in seen:
                problems.append({"code": "duplicate_custom_id", "line": i, "param": "custom_id",
                                 "message": f"the custom_id {cid!r} is used more than once"})
            seen.add(cid)
            lines.append((cid, line["body"]))
        job["request_counts"]["total"] = len(lines)
        if problems or not lines:
            problems = problems or [{"code": "empty_file", "line": None, "param": None,
                                     "message": "the input file has no requests"}]
            job.update(status="failed", failed_at=now, errors={"object": "list", "data": problems})
        return self._new("openai", job, lines, headers)

    def _anthropic_create(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise BadRequest("requests: a non-empty array is required")
        lines, seen = [], set()
        for r in requests:
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid):
                raise BadRequest(f"requests: custom_id must match ^[a-zA-Z0-9_-]{{1,64}}$, got {cid!r}")
            if cid in seen:
                raise BadRequest(f"requests: duplicate custom_id {cid!r}")
            if not isinstance(r.get("params"), dict):
                raise BadRequest("requests: each request needs a params object")
            seen.add(cid)
            lines.append((cid, r["params"]))
        now = time.time()
        jid = "msgbatch_" + _digest("msgbatch", len(self.jobs), lines)[:24]
        job = {"id": jid, "type": "message_batch", "processing_status": "in_progress",
               "request_counts": {"processing": len(lines), "succeeded": 0, "errored": 0, "canceled": 0,
                                  "expired": 0},
               "created_at": _rfc3339(now), "expires_at": _rfc3339(now + 86400), "ended_at": None,
               "archived_at": None, "cancel_initiated_at": None, "results_url": None}
        return self._new("anthropic", job, lines, headers)

    # -- progress ----------------------------------------------------------------------------------

    def _view(self, jid: str, headers: Mapping[str, str]) -> dict[str, Any]:
        job = dict(self.jobs[jid])
        if job.get("type") == "message_batch" and jid in self.results:
            job["results_url"] = f"http://{headers.get('host', '127.0.0.1')}/v1/messages/batches/{jid}/results"
        return job

    def _tick(self, jid: str) -> None:
        job = self.jobs[jid]
        if job.get("status") == "validating":
            job.update(status="in_progress", in_progress_at=int(time.time()))
        ended = job.get("status") in ("completed", "failed", "expired", "cancelled") \
            or job.get("processing_status") == "ended"
        if not ended and time.monotonic() - self.created[jid] >= self.app.config.batch_seconds:
            self._finish(jid)

    def _finish(self, jid: str, cancel: bool = False) -> None:
        """Run every line (or none, for a cancel) and end the job."""
        job, cfg = self.jobs[jid], self.app.config
        if job.get("status") in ("completed", "failed", "expired", "cancelled") \
                or job.get("processing_status") == "ended":
            return
        provider = "anthropic" if job.get("type") == "message_batch" else "openai"
        outcomes = [self._run_line(provider, cid, body, self.headers[jid], cfg, cancel)
                    for cid, body in self.lines[jid]]
        kinds = [k for k, _ in outcomes]
        now = time.time()
        if provider == "anthropic":
            counts = {"processing": 0, "succeeded": kinds.count("ok"), "errored": kinds.count("error"),
                      "canceled": kinds.count("cancelled"), "expired": kinds.count("expired")}
            data = b"".join(json.dumps(line).encode() + b"\n" for _, line in outcomes)
            self.results[jid] = data
            job.update(processing_status="ended", request_counts=counts, ended_at=_rfc3339(now),
                       cancel_initiated_at=_rfc3339(now) if cancel else None)
            return
        good = [line for k, line in outcomes if k == "ok"]
        bad = [line for k, line in outcomes if k != "ok"]
        for name, rows in (("output_file_id", good), ("error_file_id", bad)):
            if rows:
                fid = "file-" + _digest(jid, name)[:24]
                data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
                self.app.fine_tuning.contents[fid] = data
                self.app.fine_tuning.files[fid] = {"id": fid, "object": "file", "bytes": len(data),
                                                   "created_at": int(now), "filename": f"{jid}_{name}.jsonl",
                                                   "purpose": "batch_output", "status": "processed"}
                job[name] = fid
        status = "cancelled" if cancel else "expired" if "expired" in kinds else "completed"
        job.update(status=status, request_counts={"total": len(kinds), "completed": len(good), "failed": len(bad)},
                   finalizing_at=int(now), **{f"{status}_at": int(now)})
        if cancel:
            job["cancelling_at"] = int(now)

    def _run_line(self, provider: str, cid: str, body: dict[str, Any], headers: Mapping[str, str],
                  cfg: Config, cancel: bool) -> tuple[str, dict[str, Any]]:
        """One line as one attempt in the counters -> (ok | error | expired | cancelled, result line)."""
        rid = _digest("line", cid, time.monotonic())[:24]
        if cancel:
            return "cancelled", self._line(provider, cid, rid, None, "cancelled")
        self.app.stats.begin(provider, headers)
        key = request_key(provider, body)
        self.app.stats.received(provider, body)
        attempt = self.app.stats.attempt(key)
        outcome, status = "ok", 200
        try:
            if _unit(cfg.seed, "batch-expire", key, attempt) < cfg.batch_expire:
                outcome, status = "batch_expired", None
                return "expired", self._line(provider, cid, rid, None, "expired")
            if _unit(cfg.seed, "batch-error", key, attempt) < cfg.batch_line_errors:
                outcome, status = "batch_error", 500
                return "error", self._line(provider, cid, rid, (500, "The server had an error (injected)"), "error")
            try:
                req = normalize(provider, body, key)
                texts = [self.app.responder(req, i) for i in range(req.n)]
            except BadRequest as e:
                outcome, status = "bad_request", 400
                return "error", self._line(provider, cid, rid, (400, str(e)), "error")
            payload = anthropic_response(req, texts, rid) if provider == "anthropic" else \
                openai_response(req, texts, body, rid)
            return "ok", self._line(provider, cid, rid, payload, "ok")
        finally:
            self.app.stats.end(outcome, status, key)

    @staticmethod
    def _line(provider: str, cid: str, rid: str, what: Any, kind: str) -> dict[str, Any]:
        if provider == "anthropic":
            if kind == "ok":
                return {"custom_id": cid, "result": {"type": "succeeded", "message": what}}
            if kind == "error":
                return {"custom_id": cid, "result": {"type": "errored", "error": error_body(provider, what[0],
                                                                                        what[1], rid)}}
            return {"custom_id": cid, "result": {"type": "canceled" if kind == "cancelled" else "expired"}}
        if kind == "ok":
            return {"id": f"batch_req_{rid}", "custom_id": cid, "error": None,
                    "response": {"status_code": 200, "request_id": rid, "body": what}}
        if kind == "error":
            return {"id": f"batch_req_{rid}", "custom_id": cid, "error": None,
                    "response": {"status_code": what[0], "request_id": rid,
                                 "body": error_body(provider, what[0], what[1], rid)}}
        message = ("This request could not be executed before the completion window expired."
                   if kind == "expired" else "This request was not executed because the batch was cancelled.")
        return {"id": f"batch_req_{rid}", "custom_id": cid, "response": None,
                "error": {"code": f"batch_{kind}", "message": message}}


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
        self.connections: set[asyncio.Task] = set()

    def configure(self, **changes: Any) -> Config:
        faults = {**self.config.faults, **changes.pop("faults", {})}  # faults merge; the rest replaces
        self.config = replace(self.config, faults=faults, **changes).validate()  # one atomic swap
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
        return key, "ok", _reply(200, payload, {"request-id" if provider == "anthropic" else "x-request-id": rid})


def _reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})}


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
                 api_key: str | None = None):
        config = Config(latency, dict(faults or {}), retry_after, timeout_hold, seed, api_key)
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
    p.add_argument("--responder", help="module:function with signature (FakeRequest, index) -> str")
    p.add_argument("--models", default="fake-model", help="comma-separated names for GET /v1/models")
    a = p.parse_args(argv)
    faults = {k: getattr(a, f"fault_{k}") for k in FAULT_KINDS if getattr(a, f"fault_{k}")}
    try:
        config = Config(a.latency, faults, a.retry_after, a.timeout_hold, a.seed, a.api_key, a.batch_seconds,
                        a.batch_line_errors, a.batch_expire).validate()
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
