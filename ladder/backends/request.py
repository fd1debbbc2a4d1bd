"""One request of the HTTP API backends and what becomes of it: the Request (a prompt's body for
some sample indices), a failed attempt (Failure), the Tally of a sample() call's outcomes, and
APIClient, what the batch route (batch.py) needs of a backend: batch.py reads the backend through
this protocol, so it need not import api.py, which hands it the requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from ladder.backends.api_config import APIConfig
    from ladder.config import GenerationConfig
    from ladder.types import Sample

DOWN_AFTER = 20
"""This many requests in a row that failed after all their retries on server-side errors (5xx,
timeouts, dropped connections, malformed bodies; not 429) mean the server is down: the stage sends
nothing more (the rest become error samples a re-run retries) and later stages on this model are
skipped. A dead server otherwise cost every stage n × (max_retries + 1) requests and minutes each."""


@dataclass(frozen=True)
class Request:
    job: int
    """Index into the jobs list of this sample() call."""
    indices: tuple[int, ...]
    """Sample indices this request answers (OpenAI: several through `n`; Anthropic: one)."""
    body: dict[str, Any]


class Failure(Exception):
    """One attempt failed. `retry` says whether another attempt may succeed; `wait` is the
    server's Retry-After in seconds, if it sent one."""

    def __init__(self, reason: str, retry: bool, wait: float | None = None, server: bool = True):
        super().__init__(reason)
        self.reason, self.retry, self.wait, self.server = reason, retry, wait, server


class APIClient(Protocol):
    """What batch.py reads of an HTTP API backend (api.py's APIBackend is one)."""

    provider: str
    """Provider name, which is also its SDK's module name."""
    path: str
    """Endpoint of one request, relative to the client's base URL."""
    config: APIConfig

    def api_key(self) -> str:
        """The key from the environment variable the config names."""

    def sdk(self) -> Any:
        """The provider's SDK module."""

    def parse(self, data: dict[str, Any], request: Request, gen: GenerationConfig) -> list[Sample]:
        """One Sample per index of `request` from the decoded response."""


@dataclass
class Tally:
    """Outcomes of one sample() call, for the give-up rule and the closing report."""

    ok: int = 0
    rejected: int = 0
    down_run: int = 0
    """Requests in a row that failed on server errors after all retries (DOWN_AFTER)."""
    errors: Counter = field(default_factory=Counter)

    def report(self, provider: str) -> None:
        if not self.errors:
            return
        from ladder.progress import console

        total = sum(self.errors.values())
        common = "; ".join(f"{reason} (×{n})" for reason, n in self.errors.most_common(3))
        console.print(f"[yellow]warn[/yellow] {provider}: {total} requests failed after all retries: "
                      f"{common}. They are not cached; a re-run retries only those.", highlight=False)
        if self.down_run >= DOWN_AFTER:
            console.print(f"[yellow]warn[/yellow] {provider}: {self.down_run} requests in a row failed on "
                          f"server errors, so the rest of the stage was not sent and later stages on this "
                          f"model are skipped; run the same command again once the server answers",
                          highlight=False)


def after_attempts(reason: str, attempt: int) -> str:
    return reason if attempt == 0 else f"{reason} (after {attempt + 1} attempts)"


def chunks(indices: tuple[int, ...], size: int) -> list[tuple[int, ...]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def split(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split into integers in proportion to `weights` (largest remainder), summing to total."""
    if not weights:
        return []
    if len(weights) == 1 and type(total) is int:  # one sample per request (the common case)
        return [total]
    mass = sum(weights)
    shares = [total * w / mass for w in weights] if mass > 0 else [total / len(weights)] * len(weights)
    out = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: out[i] - shares[i])
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out
