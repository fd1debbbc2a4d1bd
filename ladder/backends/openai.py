"""OpenAI chat completions — and, with `base_url`, any OpenAI-compatible server (vLLM, TGI,
llama.cpp, Ollama), which is how generation scales past one process.

n samples of a prompt come from one request with `n` (chunks of 128, the API's cap), so the
prompt is paid for once; the usage the API reports per request is split across its samples.
The shared machinery — concurrency, retries, cost, key handling — is in api.py.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from ladder.backends.api import APIBackend, APIConfig, Request, split
from ladder.config import GenerationConfig
from ladder.types import Message, Sample


class OpenAIConfig(APIConfig):
    backend: Literal["openai"] = "openai"
    name: str
    """Model name as the server knows it: gpt-4o-mini, or e.g. Qwen/Qwen2.5-7B-Instruct on vLLM."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """The environment variable with the key (its name, never the key); null for keyless servers."""
    logprobs: bool = False
    """Ask for token log-probabilities; each sample's `logprob` is then the sum over its tokens."""
    max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    """Request key for the output limit: OpenAI's own API wants max_completion_tokens (reasoning
    models reject max_tokens), some compatible servers only know max_tokens. auto: the first
    without base_url, the second with it."""


class OpenAIBackend(APIBackend):
    Config = OpenAIConfig
    provider = "openai"
    client_class = "AsyncOpenAI"
    path = "/chat/completions"
    max_n = 128
    models_path = "/models"

    config: OpenAIConfig

    @property
    def fingerprint(self) -> str:
        # Samples cached without log-probabilities must not answer a run that asks for them.
        return super().fingerprint + ("+logprobs" if self.config.logprobs else "")

    def body(self, messages: Sequence[Message], gen: GenerationConfig, indices: tuple[int, ...]) -> dict[str, Any]:
        limit = self.config.max_tokens_field
        if limit == "auto":
            limit = "max_tokens" if self.config.base_url else "max_completion_tokens"
        body: dict[str, Any] = {"model": self.config.name, "messages": [m.to_dict() for m in messages],
                                "n": len(indices), "temperature": gen.temperature, "top_p": gen.top_p,
                                limit: gen.max_tokens}
        if gen.stop:
            body["stop"] = list(gen.stop)
        if gen.seed is not None:
            # A seeded request for samples 8-15 must not replay samples 0-7: offset by the first index.
            body["seed"] = (gen.seed + 1_000_003 * indices[0]) % 2**31
        if self.config.logprobs:
            body["logprobs"] = True
        return body

    def parse(self, data: dict[str, Any], request: Request, gen: GenerationConfig) -> list[Sample]:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        n = len(request.indices)
        if len(choices) != n:
            raise ValueError(f"{len(choices)} choices for n={n}")
        texts = [c["message"].get("content") or c["message"].get("refusal") or "" for c in choices]
        tokens = [_token_logprobs(c) for c in choices]
        usage = data.get("usage") or {}
        prompt_total = usage.get("prompt_tokens")
        if prompt_total is None:  # some compatible servers omit usage: estimate it
            prompt_total = self.count_tokens([Message(**m) for m in request.body["messages"]])
        # The prompt is billed once for all n choices: each sample carries its share, so tokens and
        # cost sum to what the request cost. Completion tokens split by each choice's length.
        lengths = [len(t) if t is not None else len(text) / 4 for t, text in zip(tokens, texts)]
        completion_total = usage.get("completion_tokens")
        if completion_total is None:
            completion_total = round(sum(lengths))
        prompt = split(prompt_total, [1] * n)
        completion = split(completion_total, lengths)
        # Prompt prefixes of 1024+ tokens the API saw recently are read from its cache, unasked.
        cached = split(min(_cached_tokens(usage), prompt_total), [1] * n)
        return [Sample(text=text, finish_reason=_finish(c.get("finish_reason"), gen),
                       prompt_tokens=p, completion_tokens=k, cached_tokens=r,
                       logprob=sum(t) if t is not None and self.config.logprobs else None,
                       cost=self.cost(p, k, cached=r))
                for c, text, t, p, k, r in zip(choices, texts, tokens, prompt, completion, cached)]


def _finish(reason: str | None, gen: GenerationConfig) -> str:
    if reason == "length":
        return "length"
    # OpenAI says "stop" both for a custom stop sequence and for the model's own end of turn;
    # without custom stops it can only have been the latter.
    if reason == "stop" and gen.stop:
        return "stop"
    return "eos"  # stop without custom stops, content_filter, tool_calls


def _token_logprobs(choice: dict[str, Any]) -> list[float] | None:
    content = (choice.get("logprobs") or {}).get("content")
    return None if content is None else [t["logprob"] for t in content]


def _cached_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens served from OpenAI's prompt cache (usage.prompt_tokens_details.cached_tokens;
    absent on servers without caching)."""
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
