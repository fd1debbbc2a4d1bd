"""What an HTTP API backend's calls cost (api.py's APIBackend has these): the price per 1M tokens
(the config's `price:`, else the prices.yaml entry of the model), an estimate before the run, each
answer's cost at the provider's prompt-cache prices, and the context window from the same table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ladder.backends.prices import Price, model_entry, price_of

if TYPE_CHECKING:
    from ladder.backends.api_config import APIConfig


class APICost:
    config: APIConfig
    max_n: int
    """Most samples one request returns: the prompt is paid once per request."""

    def price(self) -> Price | None:
        # Asked once per answer (cost()): built once per config, which is frozen, as the table is.
        memo = self.__dict__.get("_price")
        if memo is not None and memo[0] is self.config:
            return memo[1]
        price = self.config.price
        if price is None:
            entry = model_entry(self.config.name)
            price = price_of(entry)
        self._price = (self.config, price)
        return price

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.price()
        if price is None:
            return 0.0
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    def cost(self, prompt_tokens: int, completion_tokens: int, cached: int = 0, written: int = 0) -> float:
        """USD of one answer whose prompt_tokens include `cached` tokens read from the provider's
        prompt cache and `written` tokens written to it, each at its own price."""
        price = self.price()
        if price is None:
            return 0.0
        read_price = price.input if price.cached_input is None else price.cached_input
        write_price = price.input if price.cache_write is None else price.cache_write
        plain = prompt_tokens - cached - written
        return (plain * price.input + cached * read_price + written * write_price
                + completion_tokens * price.output) / 1e6

    def prompt_copies(self, n: int) -> int:
        return math.ceil(n / self.max_n)

    @property
    def context_window(self) -> int | None:
        if self.config.context_window:
            return self.config.context_window
        entry = model_entry(self.config.name)
        return entry.get("context") if entry else None
