"""The keys every HTTP API backend's config has (openai.py and anthropic.py add theirs): the
server, the key's environment variable, the retry policy, the transport, prices and the batch route.
The backend that reads them is in api.py."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from ladder.backends.base import BackendConfig
from ladder.backends.limits import RateControl
from ladder.backends.prices import Price
from ladder.config import check_env_name

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class APIConfig(RateControl, BackendConfig):
    """Keys every HTTP API backend has; openai.py and anthropic.py add theirs."""

    # A pydantic error repeats its input; api_key_env's may be a pasted key (see check_env_name).
    model_config = ConfigDict(hide_input_in_errors=True)

    base_url: str | None = None
    """Server root; unset means the provider's own API. For OpenAI-compatible servers (vLLM, TGI,
    llama.cpp, Ollama) include the /v1 path, e.g. http://localhost:8000/v1."""
    api_key_env: str | None
    """Name of the environment variable that holds the API key (never the key itself: keys are
    read from the environment only). null for local servers that need no key."""

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, v: str | None) -> str | None:
        return check_env_name(v, cls.model_fields["api_key_env"].default or "OPENAI_API_KEY")

    max_retries: int = Field(6, ge=0, le=100)
    """Retries of a request that hit a 429, 5xx, timeout, dropped connection or malformed body,
    before it is recorded as an error (a re-run retries only those): max_retries + 1 attempts."""
    max_retry_seconds: float = Field(300.0, gt=0)
    """Longest time one request may take, in seconds, attempts and waits included, counted from its
    first attempt: no new attempt starts after it (even with retries left), one in flight is cut
    off at it, and the request is recorded as an error that a re-run retries."""
    timeout: float = Field(120.0, gt=0)
    """Seconds to wait for one response before counting the attempt as timed out."""
    backoff: float = Field(1.0, ge=0)
    """Seconds before the first retry; doubles with every retry (with random jitter), up to
    max_backoff. A server's Retry-After, when sent, is used instead."""
    max_backoff: float = Field(60.0, gt=0)
    """Longest wait between two attempts, in seconds (caps Retry-After too)."""
    http_client: Literal["auto", "aiohttp", "httpx"] = "auto"
    """The SDK's HTTP transport. aiohttp (the SDKs' official one, installed with ladder through
    openai[aiohttp] / anthropic[aiohttp]) costs about a third less CPU per request than httpx,
    which counts at hundreds of requests a second (scripts/bench_api.py). auto: aiohttp when it
    is installed, else httpx; httpx: the SDKs' own default, e.g. for its proxy settings."""
    price: Price | None = None
    """USD per 1M input/output tokens, overriding ladder/data/prices.yaml: e.g. {input: 0,
    output: 0} for your own server, or today's price of a model the table lacks."""
    context_window: int | None = Field(None, ge=1)
    """Prompt + answer tokens the model accepts (few_shot `k: max` packs up to it); defaults to
    the prices.yaml entry."""
    batch: bool = False
    """Send the requests through the provider's batch API (OpenAI Batch API, Anthropic Message
    Batches): half the list price, results within 24 h. Job ids are recorded under the cache
    folder (batches/) before any waiting, so after Ctrl-C or a crash the same command resumes the
    same jobs; results land in the same cache as without batch. See ladder/backends/batch.py."""
    batch_poll_interval: float = Field(30.0, gt=0)
    """Seconds between two looks at a running batch job."""
    batch_max_requests: int = Field(50_000, ge=1, le=100_000)
    """Most requests in one batch job (OpenAI takes 50,000, Anthropic 100,000); more go out as
    several jobs."""

