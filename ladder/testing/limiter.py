"""A provider-style rate limiter for the fake API server: token buckets of requests and tokens per
minute, answering 429 with the headers and Retry-After the real providers send.

    FakeAPIServer(latency=0.2, limits={"rpm": 1200, "tpm": 200_000, "mode": "spend"})
    python -m ladder.testing.fake_api --rpm 1200 --tpm 200000 --limit-mode spend

- Buckets refill continuously at rpm/60 requests and tpm/60 tokens a second and hold `burst`
  seconds of them (default 1 s: OpenAI documents that a per-minute limit may be enforced over
  shorter periods, "60,000 requests/minute may be enforced as 1,000 requests/second"). They start full.
- A request costs 1 request and, like OpenAI's estimate, its prompt tokens plus max_tokens × n
  (whitespace tokens, as everywhere in the fake server).
- `mode`: "free" — a rejected request costs nothing; "spend" — it still takes its request (not its
  tokens) from the bucket, which may go into debt down to one burst below empty, as OpenAI
  documents ("unsuccessful requests contribute to your per-minute limit"). A client that keeps
  hammering a spending limiter stays locked out; one that paces itself does not.
- Every completion answer (200 or 429) carries the provider's headers: OpenAI's
  x-ratelimit-{limit,remaining,reset}-{requests,tokens} (reset as "1s" / "250ms" / "6m0s"),
  Anthropic's anthropic-ratelimit-{requests,tokens,input-tokens}-{limit,remaining,reset} (reset as
  an RFC 3339 time). `headers: false` sends none (a provider that only says 429). A 429 carries
  Retry-After (whole seconds, rounded up, as real servers send) and retry-after-ms: the time until
  the bucket can take the request, or `retry_after` when set (a fixed, e.g. long, hint).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

MODES = ("free", "spend")


@dataclass(frozen=True)
class Limits:
    rpm: float | None = None
    tpm: float | None = None
    mode: str = "spend"
    burst: float = 1.0
    retry_after: float | None = None
    headers: bool = True

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None) -> Limits | None:
        if not spec:
            return None
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown limit keys {sorted(unknown)}")
        lim = cls(**spec)
        if lim.mode not in MODES:
            raise ValueError(f"limit mode must be one of {MODES}, got {lim.mode!r}")
        if any(v is not None and v <= 0 for v in (lim.rpm, lim.tpm)) or lim.burst <= 0:
            raise ValueError("rpm, tpm and burst must be > 0")
        return lim


class Limiter:
    """The buckets of one server. Thread-safe (the server's loop writes, tests read counters)."""

    def __init__(self, limits: Limits | None = None):
        self._lock = threading.Lock()
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        with self._lock:
            lim = self.limits
            self.req = self._cap_r() if lim else 0.0
            self.tok = self._cap_t() if lim else 0.0
            self.at = time.monotonic()
            self.rejected = 0

    def set(self, limits: Limits | None) -> None:
        if limits != self.limits:
            self.limits = limits
            self.reset()

    def _cap_r(self) -> float:
        lim = self.limits
        return max(1.0, lim.rpm * lim.burst / 60) if lim and lim.rpm else math.inf

    def _cap_t(self) -> float:
        lim = self.limits
        return max(1.0, lim.tpm * lim.burst / 60) if lim and lim.tpm else math.inf

    def admit(self, provider: str, tokens: int) -> tuple[bool, dict[str, str]]:
        """Take one request of `tokens` from the buckets: (admitted, headers for the answer)."""
        lim = self.limits
        if lim is None:
            return True, {}
        with self._lock:
            now = time.monotonic()
            dt, self.at = now - self.at, now
            cap_r, cap_t = self._cap_r(), self._cap_t()
            if lim.rpm:
                self.req = min(cap_r, self.req + dt * lim.rpm / 60)
            if lim.tpm:
                self.tok = min(cap_t, self.tok + dt * lim.tpm / 60)
                tokens = min(tokens, cap_t)  # a request bigger than the bucket would never pass
            ok = (not lim.rpm or self.req >= 1) and (not lim.tpm or self.tok >= tokens)
            if ok or lim.mode == "spend":
                if lim.rpm:
                    self.req = max(-cap_r, self.req - 1)
            if ok and lim.tpm:
                self.tok -= tokens
            wait = 0.0
            if not ok:
                self.rejected += 1
                if lim.rpm and self.req < 1:
                    wait = (1 - self.req) * 60 / lim.rpm
                if lim.tpm and self.tok < tokens:
                    wait = max(wait, (tokens - self.tok) * 60 / lim.tpm)
            headers = self._headers(provider, now) if lim.headers else {}
        if not ok:
            hint = wait if lim.retry_after is None else lim.retry_after
            headers["retry-after"] = str(max(1, math.ceil(hint)))
            headers["retry-after-ms"] = str(round(hint * 1000))
        return ok, headers

    def _headers(self, provider: str, now: float) -> dict[str, str]:
        lim, out = self.limits, {}
        for kind, per_min, level, cap in (("requests", lim.rpm, self.req, self._cap_r()),
                                          ("tokens", lim.tpm, self.tok, self._cap_t())):
            if not per_min:
                continue
            reset = max(0.0, (cap - level) * 60 / per_min)  # until the bucket is full again
            remaining = str(max(0, math.floor(level)))
            if provider == "anthropic":
                at = (datetime.now(timezone.utc) + timedelta(seconds=reset)).isoformat().replace("+00:00", "Z")
                names = [kind] + (["input-tokens"] if kind == "tokens" else [])
                for name in names:
                    out.update({f"anthropic-ratelimit-{name}-limit": str(round(per_min)),
                                f"anthropic-ratelimit-{name}-remaining": remaining,
                                f"anthropic-ratelimit-{name}-reset": at})
            else:
                out.update({f"x-ratelimit-limit-{kind}": str(round(per_min)),
                            f"x-ratelimit-remaining-{kind}": remaining,
                            f"x-ratelimit-reset-{kind}": _duration(reset)})
        return out


def _duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


def request_tokens(prompt_tokens: int, max_tokens: int | None, n: int) -> int:
    """What the limiter charges a request: prompt tokens plus the most it may generate."""
    return prompt_tokens + (max_tokens or 0) * max(1, n)
