"""One rate controller per model in a process: how many requests may be in flight, and when the
next may start, so a run sits at the provider's limit instead of below it or in 429s.

Keyed by (provider, base_url, model, api_key_env): every stage, variant, judge and respondent
that calls the same model through the same key shares one controller, so they share one budget;
a judge on another model has its own. api.py asks it for a slot before each attempt and tells it
how the attempt ended.

- `concurrency: auto` (the API backends' default): slow start from START in flight (+1 per
  success until the first rate-limit answer), then additive increase (+1 per `limit` successes),
  multiplicative decrease (×0.5) on 429 / 529, at most once per round trip: only an answer to a
  request sent after the last decrease cuts again, so a burst of 429s from one overshoot is one
  cut, not a collapse to the floor. Bounded by `concurrency_min` and `concurrency_max`.
  A number fixes the concurrency (no increase or decrease; pacing still applies).
- Retry-After is the rejected request's own wait (api.py sleeps it, holding no slot); it never
  pauses the controller. inspect_ai's adaptive connections (AdaptiveConcurrencyController in
  inspect_ai/util/_concurrency.py, 0.3.285, read for this) had to fix exactly that
  (UKGovernmentBEIS/inspect_ai#5137): a provider sending a long Retry-After on every 429 froze its
  controller. Here the others go on at the current concurrency and the rate the headers allow.
- Pacing (GCRA, a virtual clock per budget): with a known requests/minute or tokens/minute — from
  `rate_limit:` on the model, or learnt from the answers' headers (OpenAI x-ratelimit-limit-*,
  Anthropic anthropic-ratelimit-*-limit; the lower of the two wins) — each request starts no
  earlier than its turn at PACE × the limit, so the run slows down before the 429, not after.
  A rate-limit answer while paced pushes the clock back one request: a provider that counts
  rejected requests against the limit (OpenAI documents it does) is paid back, not overdrawn.
  Token cost of a request = its prompt estimate + max_tokens × n (OpenAI's documented estimate),
  the prompt estimate corrected by the usage the server reports.
- Thread-safe: concurrent variants run their requests on their own event loops in threads; a
  waiting request is woken on its own loop (call_soon_threadsafe).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import Any, Callable, Literal, Mapping

from pydantic import Field, ValidationInfo, field_validator

from ladder.config.schema import Section

START = 8  # requests in flight before any answer has come back
PACE = 0.98  # fraction of a known limit to pace at: the slack pays back jitter (and spent 429s)
TRACE_POINTS = 400  # most (time, concurrency) points kept; older ones are thinned by half

_controllers: dict[tuple, Controller] = {}
_registry_lock = threading.Lock()


def controller_for(key: tuple, concurrency: int | str, floor: int, ceiling: int,
                   rpm: float | None = None, tpm: float | None = None) -> Controller:
    """The process's controller for `key`, made on first use. A later caller shares it, what it
    learnt included (the concurrency reached, the limits); its concurrency settings apply from
    then on, and its rate_limit too where lower."""
    with _registry_lock:
        c = _controllers.get(key)
        if c is None:
            c = _controllers[key] = Controller(concurrency, floor, ceiling, rpm, tpm)
        else:
            c.configure(concurrency, floor, ceiling)
            c.tighten(rpm, tpm)
        return c


def reset() -> None:
    """Forget every controller (tests; a new process starts empty anyway)."""
    with _registry_lock:
        _controllers.clear()


class Controller:
    def __init__(self, concurrency: int | str = "auto", floor: int = 1, ceiling: int = 256,
                 rpm: float | None = None, tpm: float | None = None):
        self.fixed = None if concurrency == "auto" else int(concurrency)
        self.floor, self.ceiling = floor, (self.fixed or ceiling)
        self.limit = float(self.fixed or min(self.ceiling, max(floor, START)))
        self.ssthresh = float(self.ceiling)
        self.conf_rpm, self.conf_tpm = rpm, tpm
        self.seen_rpm: float | None = None
        self.seen_tpm: float | None = None
        self.in_flight = 0
        self._waiters: deque[list[Any]] = deque()  # [loop, future, granted]
        self._lock = threading.Lock()
        self._tat_r = self._tat_t = 0.0  # when the next request / token may start (monotonic)
        self._token_scale = 1.0  # server's prompt count ÷ our estimate (EMA)
        self._avg_cost: float | None = None  # tokens a request is charged (EMA), for a 429 to pay back
        self._last_cut = -math.inf
        self.t0 = time.monotonic()
        self.ok = self.rate_limited = 0
        self.waited = 0.0  # seconds requests spent waiting for a slot or their turn
        self.trace: list[tuple[float, int]] = [(0.0, int(self.limit))]
        self._stride = 1  # record every stride-th change once the trace is thinned

    # -- settings ------------------------------------------------------------------------------

    def configure(self, concurrency: int | str, floor: int, ceiling: int) -> None:
        with self._lock:
            fixed = None if concurrency == "auto" else int(concurrency)
            if fixed is not None:
                self.limit = float(fixed)
            elif self.fixed is not None:  # from a fixed number back to auto: start again
                self.limit = float(min(ceiling, max(floor, START)))
                self.ssthresh = float(ceiling)
            self.fixed, self.floor, self.ceiling = fixed, floor, fixed or ceiling
            self.limit = min(float(self.ceiling), max(float(floor), self.limit))
            self._grant_locked()

    def tighten(self, rpm: float | None, tpm: float | None) -> None:
        with self._lock:
            self.conf_rpm = _lower(self.conf_rpm, rpm)
            self.conf_tpm = _lower(self.conf_tpm, tpm)

    @property
    def rpm(self) -> float | None:
        return _lower(self.conf_rpm, self.seen_rpm)

    @property
    def tpm(self) -> float | None:
        return _lower(self.conf_tpm, self.seen_tpm)

    def cap(self) -> int:
        return self.fixed or max(self.floor, int(self.limit))

    # -- slots ---------------------------------------------------------------------------------

    async def acquire(self, cost: Callable[[], tuple[float, float]] | None = None) -> float:
        """Wait for a slot and for this request's turn; returns the start time (for
        on_rate_limited). `cost()`: the request's (prompt tokens as we estimate them, max output
        tokens), asked only while a tokens/minute limit is known."""
        begun = time.monotonic()
        with self._lock:
            waiter = None
            if self.in_flight < self.cap() and not self._waiters:
                self.in_flight += 1
            else:
                waiter = [asyncio.get_running_loop(), None, False]
                waiter[1] = waiter[0].create_future()
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                await waiter[1]
            except asyncio.CancelledError:
                with self._lock:
                    if waiter[2]:
                        self._release_locked()
                    else:
                        self._waiters.remove(waiter)
                raise
        delay = self._turn(cost)
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self.release()
                raise
        now = time.monotonic()
        self.waited += now - begun
        return now

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self.in_flight -= 1
        self._grant_locked()

    def _grant_locked(self) -> None:
        while self._waiters and self.in_flight < self.cap():
            waiter = self._waiters.popleft()
            waiter[2] = True
            self.in_flight += 1
            loop, fut = waiter[0], waiter[1]
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop has closed: its request is gone
                self.in_flight -= 1

    def _turn(self, cost: Callable[[], tuple[float, float]] | None) -> float:
        """Seconds until this request may start under the known rates (0 without any)."""
        rpm, tpm = self.rpm, self.tpm
        if rpm is None and tpm is None:
            return 0.0
        tokens = 0.0
        if tpm and cost is not None:
            prompt, output = cost()
            tokens = prompt * self._token_scale + output
        with self._lock:
            if tokens:
                self._avg_cost = tokens if self._avg_cost is None else 0.9 * self._avg_cost + 0.1 * tokens
            now = time.monotonic()
            start = now
            if rpm:
                start = max(start, self._tat_r)
            if tpm:
                start = max(start, self._tat_t)
            if rpm:
                self._tat_r = start + 60 / (rpm * PACE)
            if tpm:
                self._tat_t = start + tokens * 60 / (tpm * PACE)
            return start - now

    # -- outcomes --------------------------------------------------------------------------------

    def on_success(self, headers: Mapping[str, str] | None = None, estimated: float = 0.0,
                   counted: float = 0.0) -> None:
        """An answer: grow (auto), learn the limits from `headers`, and the token estimate's error
        (`counted` prompt tokens the server billed for `estimated` of ours)."""
        if headers:
            self._learn(headers)
        with self._lock:
            self.ok += 1
            if estimated > 0 and counted > 0:
                self._token_scale = 0.9 * self._token_scale + 0.1 * (counted / estimated)
            # Grow only while the concurrency binds: when requests queue for their turn, the rate
            # does, and more slots would only hold more waiting requests.
            paced = max(self._tat_r, self._tat_t) > time.monotonic()
            if self.fixed is None and self.limit < self.ceiling and not paced:
                self.limit = min(self.ceiling, self.limit + (1.0 if self.limit < self.ssthresh else 1.0 / self.limit))
                self._note_locked()
                self._grant_locked()

    def on_rate_limited(self, started: float, headers: Mapping[str, str] | None = None) -> None:
        """A 429 / 529 to a request that started at `started`. Its Retry-After is the request's own
        wait (api.py); here: cut once per round trip, and pay the spent request back when paced."""
        if headers:
            self._learn(headers)
        with self._lock:
            self.rate_limited += 1
            now = time.monotonic()
            rpm, tpm = self.rpm, self.tpm
            if rpm:
                self._tat_r = max(self._tat_r, now) + 60 / (rpm * PACE)
            if tpm and self._avg_cost:  # the tokens bucket was short by about one request
                self._tat_t = max(self._tat_t, now) + self._avg_cost * 60 / (tpm * PACE)
            if self.fixed is None and started > self._last_cut:
                self.ssthresh = max(float(self.floor), self.limit / 2)
                self.limit = max(float(self.floor), self.limit / 2)
                self._last_cut = now
                self._note_locked(force=True)

    def _learn(self, headers: Mapping[str, str]) -> None:
        """The limits the answer states, and its remaining budget: nearly spent means the next
        request waits for the refill now, before a 429 says so."""
        headers = _rate_headers(headers)
        if not headers:
            return
        rpm, tpm = read_limits(headers)
        if rpm is not None:
            self.seen_rpm = rpm
        if tpm is not None:
            self.seen_tpm = tpm
        left_r, left_t = read_limits(headers, "remaining")
        rpm, tpm = self.rpm, self.tpm
        if (left_r is None or not rpm) and (left_t is None or not tpm or not self._avg_cost):
            return
        with self._lock:
            now = time.monotonic()
            if rpm and left_r is not None and left_r < 1:
                self._tat_r = max(self._tat_r, now + 60 / rpm)
            if tpm and self._avg_cost and left_t is not None and left_t < self._avg_cost:
                self._tat_t = max(self._tat_t, now + (self._avg_cost - left_t) * 60 / tpm)

    def _note_locked(self, force: bool = False) -> None:
        value = self.cap()
        if value == self.trace[-1][1]:
            return
        if not force and self.ok % self._stride:
            return
        self.trace.append((round(time.monotonic() - self.t0, 3), value))
        if len(self.trace) > TRACE_POINTS:
            self.trace = self.trace[::2]
            self._stride *= 2

    # -- reporting -------------------------------------------------------------------------------

    def status(self) -> str:
        """For the progress line: 'concurrency 24 · 3 rate-limited'."""
        return f"concurrency {self.cap()} · {self.rate_limited} rate-limited"

    def mark(self) -> dict[str, float]:
        return {"t": time.monotonic(), "ok": self.ok, "rate_limited": self.rate_limited, "waited": self.waited}

    def report(self, since: Mapping[str, float]) -> dict[str, Any]:
        """metrics.json's record of the controller since `since` (a mark()): concurrency over time
        (seconds from the mark), rate-limit answers, seconds requests waited for a slot or turn."""
        start = since["t"] - self.t0
        points = [(round(t - start, 3), c) for t, c in self.trace if t >= start]
        before = [c for t, c in self.trace if t < start]
        if before:
            points.insert(0, (0.0, before[-1]))
        return {"mode": "fixed" if self.fixed else "auto", "concurrency_now": self.cap(),
                "concurrency_max_reached": max([c for _, c in points] or [self.cap()]),
                "concurrency_trace": [list(p) for p in points],
                "answered": self.ok - since["ok"], "rate_limited": self.rate_limited - since["rate_limited"],
                "waited_seconds": round(self.waited - since["waited"], 3),
                "requests_per_minute": self.rpm, "tokens_per_minute": self.tpm}


def _rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of an answer, in one pass over the raw list where the SDK's headers
    have one (each lookup in its case-insensitive mapping scans the list again: a dozen of them
    per answer were a measurable share of the CPU per request at hundreds of requests a second)."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return {k.lower(): v for k, v in headers.items() if "ratelimit" in k.lower()}
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in ((k.lower(), v) for k, v in raw)
            if b"ratelimit" in k}


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _lower(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def read_limits(headers: Mapping[str, str], what: str = "limit") -> tuple[float | None, float | None]:
    """(requests/min, tokens/min) a provider's answer states (what="remaining": what is left of
    them), or None each: OpenAI's x-ratelimit-limit-requests / -tokens, Anthropic's
    anthropic-ratelimit-requests-limit and -tokens-limit (else -input-tokens-limit)."""
    rpm = headers.get(f"x-ratelimit-{what}-requests") or headers.get(f"anthropic-ratelimit-requests-{what}")
    tpm = (headers.get(f"x-ratelimit-{what}-tokens") or headers.get(f"anthropic-ratelimit-tokens-{what}")
           or headers.get(f"anthropic-ratelimit-input-tokens-{what}"))
    return _number(rpm, what == "remaining"), _number(tpm, what == "remaining")


def _number(text: str | None, zero: bool = False) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    if value is None or not math.isfinite(value):
        return None
    return value if value > 0 or (zero and value == 0) else None



class RateLimit(Section):
    """A known tier's limits for one model (both optional)."""

    requests_per_minute: float | None = Field(None, gt=0)
    """Requests a minute the provider allows this model and key, e.g. 500 (your tier's page)."""
    tokens_per_minute: float | None = Field(None, gt=0)
    """Tokens a minute (prompt + max_tokens × n per request, as OpenAI counts them), e.g. 200000."""

    def per_minute(self) -> tuple[float | None, float | None]:
        return self.requests_per_minute, self.tokens_per_minute


class RateControl(Section):
    """The API backends' concurrency and pacing keys (mixed into APIConfig)."""

    concurrency: int | Literal["auto"] = "auto"
    """Requests in flight at once. auto (the default): start at 8, grow while the provider keeps
    up, halve on a rate-limit answer (429 / 529), between concurrency_min and concurrency_max,
    shared by every stage and variant calling this model with this key. A number fixes it."""
    concurrency_min: int = Field(1, ge=1, le=4096)
    """Fewest requests in flight under concurrency: auto, however many rate-limit answers come."""
    concurrency_max: int = Field(256, ge=1, le=4096)
    """Most requests in flight under concurrency: auto (also the number of open connections)."""
    rate_limit: RateLimit | None = None
    """Your tier's limits, e.g. {requests_per_minute: 500, tokens_per_minute: 200000}: requests are
    paced just under them from the first one (the providers' rate-limit headers are read anyway),
    and `ladder check` estimates the wall time from them."""

    @field_validator("concurrency")
    @classmethod
    def _a_count_or_auto(cls, c: int | str) -> int | str:
        if c != "auto" and not 1 <= c <= 4096:
            raise ValueError(f"concurrency must be auto or a whole number from 1 to 4096, got {c}: write "
                             f"`concurrency: auto` to let ladder find the provider's limit, or a number to fix it")
        return c

    @field_validator("concurrency_max")
    @classmethod
    def _above_the_floor(cls, top: int, info: ValidationInfo) -> int:
        floor = info.data.get("concurrency_min")
        if floor is not None and floor > top:
            raise ValueError(f"concurrency_min ({floor}) is above concurrency_max ({top}): lower "
                             f"concurrency_min or raise concurrency_max")
        return top

    def connections(self) -> int:
        """Workers and open connections: the fixed concurrency, or the most auto may reach."""
        return self.concurrency_max if self.concurrency == "auto" else self.concurrency


def request_tokens(body: Mapping[str, Any], n: int) -> tuple[float, float]:
    """A request's token cost as a limiter counts it: (prompt tokens, 4 characters a token;
    max_tokens × n)."""
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ())) + len(str(body.get("system", "")))
    most = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return chars / 4, float(most * n)


def rate_estimate(config: Any, requests: int, tokens: int) -> dict[str, Any]:
    """`ladder check`: the least wall time `requests` carrying `tokens` (prompt + max output) take
    under the model's `rate_limit:` — {} when none is set (or the batch API is used)."""
    limit = getattr(config, "rate_limit", None)
    if limit is None or getattr(config, "batch", False) or requests <= 0:
        return {}
    rpm, tpm = limit.per_minute()
    bounds = {"requests": requests / rpm * 60 if rpm else 0.0, "tokens": tokens / tpm * 60 if tpm else 0.0}
    bound = max(bounds, key=bounds.get)
    return {"rate_limit": {"requests": requests, "tokens": tokens, "requests_per_minute": rpm,
                           "tokens_per_minute": tpm, "seconds": round(bounds[bound], 1), "bound": bound}}
