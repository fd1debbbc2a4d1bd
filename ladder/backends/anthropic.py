"""Anthropic messages API.

The API has no `n`, so each sample is its own request, reported (and cached) as soon as it ends.
System messages go in the top-level `system` field. Sampling arguments are sent in the JSON
body we build ourselves — some SDK releases (2.x included) no longer accept temperature or
top_p as keywords of messages.create. The shared machinery is in api.py.

temperature and top_p: Anthropic's rule is to alter one of them, not both, and recent models
(Opus 4.1, Sonnet/Haiku 4.5 and later) reject a request that carries both with a 400. So one is
sent (`sampling()`): temperature, except at temperature 1 (the API's own default) with top_p
below 1, where top_p alone asks for exactly the same thing. At temperature 0 ladder decodes
greedily on every backend and top_p has no effect, so temperature 0 alone is sent. A config that
alters both (0 < temperature < 1 and top_p < 1) is refused before the run, since no request can
express it. Which one was sent is recorded in metrics.json (`stats.sampling_sent`).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from ladder.backends.api import APIBackend, APIConfig, Request
from ladder.config import GenerationConfig
from ladder.errors import BackendError
from ladder.types import Message, Sample

# end_turn: the model ended its turn; stop_sequence: one of ours fired; refusal and the tool
# reasons also end the turn.
FINISH = {"end_turn": "eos", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicConfig(APIConfig):
    backend: Literal["anthropic"] = "anthropic"
    name: str
    """Model name, e.g. claude-3-5-haiku-latest or claude-sonnet-4-5."""
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    """The environment variable with the key (its name, never the key); null for keyless servers."""


class AnthropicBackend(APIBackend):
    Config = AnthropicConfig
    provider = "anthropic"
    client_class = "AsyncAnthropic"
    path = "/v1/messages"
    max_n = 1
    models_path = "/v1/models"

    config: AnthropicConfig

    def sampling(self, gen: GenerationConfig) -> dict[str, float]:
        """The one sampling argument requests carry (see the module docstring); BackendError for
        settings the API cannot take."""
        if gen.temperature > 1:
            raise BackendError(f"Anthropic models take a temperature from 0 to 1, not {gen.temperature:g}",
                               field="generation.temperature", fix="set it to at most 1")
        if gen.top_p == 1 or gen.temperature == 0:
            return {"temperature": gen.temperature}
        if gen.temperature == 1:
            return {"top_p": gen.top_p}
        raise BackendError(f"Anthropic models take temperature or top_p, not both (recent models reject "
                           f"requests with both), and this config sets temperature {gen.temperature:g} "
                           f"with top_p {gen.top_p:g}", field="generation.top_p",
                           fix=f"keep one: top_p: 1 samples at temperature {gen.temperature:g}; "
                               f"temperature: 1 samples with top_p {gen.top_p:g}")

    def check_generation(self, gen: GenerationConfig) -> None:
        self.sampling(gen)

    def sent_sampling(self, gen: GenerationConfig) -> dict[str, float]:
        return self.sampling(gen)

    def body(self, messages: Sequence[Message], gen: GenerationConfig, indices: tuple[int, ...]) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {"model": self.config.name, "max_tokens": gen.max_tokens,
                                "messages": [m.to_dict() for m in messages if m.role != "system"],
                                **self.sampling(gen)}
        if system:
            body["system"] = system
        if gen.stop:
            body["stop_sequences"] = list(gen.stop)
        if any(m.cache for m in messages):
            body = cache_breakpoints(body, messages)
        return body

    def parse(self, data: dict[str, Any], request: Request, gen: GenerationConfig) -> list[Sample]:
        text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
        usage = data["usage"]
        # input_tokens excludes prompt-cache reads and writes: all three are prompt tokens, each at its price.
        written = usage.get("cache_creation_input_tokens") or 0
        read = usage.get("cache_read_input_tokens") or 0
        prompt = usage["input_tokens"] + written + read
        completion = usage["output_tokens"]
        return [Sample(text=text, finish_reason=FINISH.get(data.get("stop_reason"), "eos"),
                       prompt_tokens=prompt, completion_tokens=completion, cached_tokens=read,
                       cost=self.cost(prompt, completion, cached=read, written=written))]


def cache_breakpoints(body: dict[str, Any], messages: Sequence[Message]) -> dict[str, Any]:
    """`body` with a prompt-cache breakpoint (cache_control ephemeral: the 5-minute cache) on the
    content block that ends each message marked `cache` (few_shot's fixed shots): everything up
    to and including it is cached. A marked system message marks the system block. The API caches
    only prefixes of at least 1024-4096 tokens (by model); shorter ones are sent as usual, unbilled."""
    mark = {"type": "ephemeral"}
    if any(m.cache and m.role == "system" for m in messages) and "system" in body:
        body["system"] = [{"type": "text", "text": body["system"], "cache_control": mark}]
    turns = [m for m in messages if m.role != "system"]
    for i, m in enumerate(turns):
        if m.cache:
            body["messages"][i] = {"role": m.role,
                                   "content": [{"type": "text", "text": m.content, "cache_control": mark}]}
    return body
