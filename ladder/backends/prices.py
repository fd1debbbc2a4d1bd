"""Model prices: ladder/data/prices.yaml (list prices per 1M tokens; check them) and the `price:`
a config may give instead. Its own module so the API backends and the batch route share it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import Field

from ladder.config import Section
from ladder.types import Message

PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"
# Dated snapshots and aliases price like their family: gpt-4o-mini-2024-07-18, claude-3-5-haiku-latest.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class Price(Section):
    input: float = Field(ge=0)
    """US dollars per 1M prompt (input) tokens."""
    output: float = Field(ge=0)
    """US dollars per 1M completion (output) tokens."""
    cached_input: float | None = Field(None, ge=0)
    """USD per 1M prompt tokens read from the provider's prompt cache; unset: the input price."""
    cache_write: float | None = Field(None, ge=0)
    """USD per 1M prompt tokens written to the prompt cache (Anthropic: 1.25 × input for the
    5-minute cache); unset: the input price."""


@cache
def price_table() -> dict[str, dict[str, float]]:
    return yaml.safe_load(PRICES.read_text(encoding="utf-8")) or {}


def model_entry(name: str) -> dict[str, float] | None:
    """The prices.yaml entry of a model: exact name, else its family for a dated snapshot. A
    fine-tuned model (`ft:gpt-4o-mini-2024-07-18:org:suffix:id`, OpenAI's naming) prices as its
    base model's `fine_tuned` row, in its base model's context window."""
    table = price_table()
    if name in table:
        return table[name]
    if name.startswith("ft:"):
        base = model_entry(name.split(":")[1])
        tuned = (base or {}).get("fine_tuned")
        return {"context": base.get("context"), **tuned} if base and tuned else None  # type: ignore[union-attr]
    family = _SNAPSHOT.sub("", name)
    return table.get(family)


def price_of(entry: dict[str, Any] | None) -> Price | None:
    """A price table row as a Price (None for no row): the fields Price has, the rest left out."""
    return Price(**{k: entry[k] for k in Price.model_fields if k in entry}) if entry else None


def training_price(name: str) -> float | None:
    """USD per 1M training tokens of a fine-tuning job on model `name`; None when the table has none."""
    entry = model_entry(name)
    return entry.get("training") if entry else None


def fine_tuned_name(name: str) -> str:
    """The name pricing takes for what a fine-tuning job on `name` makes (`ft:<name>`)."""
    return f"ft:{name}"


# Prompt caching's smallest cacheable prefix, and OpenAI's cache block: OpenAI caches 1024 tokens,
# then each further 128; Anthropic caches the prefix up to its breakpoint from 1024 tokens on
# (2048-4096 for some models: then this estimate is too low — it is the floor, said as such).
CACHE_MIN, CACHE_BLOCK = 1024, 128


def cached_estimate(backend: object, prompts: Sequence[Sequence[Message]], n: int, max_tokens: int) -> dict | None:
    """`ladder check`'s cost of prompts that share a marked prefix (few_shot `shots: fixed`) when
    the provider's prompt cache serves it: the first request misses (OpenAI) or writes the prefix
    (Anthropic, at the cache-write price), every later one reads it at the cached-input price — the
    order ladder sends them in. None when no prompt is marked or the model has no cached price.
    A floor: a provider may evict the cache or need a longer prefix than CACHE_MIN."""
    price = backend.price()  # type: ignore[attr-defined]
    marks = [next((i for i, m in enumerate(p) if m.cache), None) for p in prompts]
    if price is None or price.cached_input is None or not prompts or None in marks:
        return None
    anthropic = getattr(backend, "provider", "") == "anthropic"
    copies = backend.prompt_copies(n)  # type: ignore[attr-defined]
    total, first_prefix = 0.0, None
    for j, (messages, mark) in enumerate(zip(prompts, marks)):
        tokens = backend.count_tokens(messages)  # type: ignore[attr-defined]
        prefix = backend.count_tokens(messages[:mark + 1])  # type: ignore[attr-defined,operator]
        first_prefix = prefix if first_prefix is None else first_prefix
        cached = 0 if prefix < CACHE_MIN else (prefix if anthropic else
                                               CACHE_MIN + (prefix - CACHE_MIN) // CACHE_BLOCK * CACHE_BLOCK)
        for c in range(copies):
            if j == 0 and c == 0:  # nothing cached yet: Anthropic writes the prefix, OpenAI just reads it
                total += backend.cost(tokens, 0, written=cached if anthropic else 0)  # type: ignore[attr-defined]
            else:
                total += backend.cost(tokens, 0, cached=cached)  # type: ignore[attr-defined]
    total += backend.cost(0, len(prompts) * n * max_tokens)  # type: ignore[attr-defined]
    return {"cost_usd_cached": total, "prefix_tokens": first_prefix}
