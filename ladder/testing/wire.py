"""The wire formats the fake server speaks: requests as it reads them (FakeRequest), its
settings (Config) and counters (Stats), OpenAI and Anthropic response and error bodies, and the
prompt cache it emulates. The server itself is ladder/testing/fake_api.py."""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field

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
    limits: dict | None = None  # a rate limiter: {rpm, tpm, mode, burst, retry_after, headers}; see limiter.py

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
        from ladder.testing.limiter import Limits

        Limits.of(self.limits)  # raises ValueError on a bad spec
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


def _reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})}
