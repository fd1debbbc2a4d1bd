"""Model prices: ladder/data/prices.yaml (list prices per 1M tokens; check them) and the `price:`
a config may give instead. Its own module so the API backends and the batch route share it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from pydantic import Field

from ladder.config import Section

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
    """The prices.yaml entry of a model: exact name, else its family for a dated snapshot."""
    table = price_table()
    if name in table:
        return table[name]
    family = _SNAPSHOT.sub("", name)
    return table.get(family)
