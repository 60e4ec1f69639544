"""Prices per model (and per tenant) and exact costs in Decimal USD.

Prices are USD per 1M tokens with at most 6 decimal places, so every token costs a
whole number of pico-dollars (1e-12 USD): the ledger stores costs as integers of
pico-dollars and never rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.serving.tally import Usage

PICO_PER_USD = 10**12
_MAX_PRICE_PLACES = 6
_ZERO = Decimal(0)


def to_pico(usd: Decimal) -> int:
    """USD to integer pico-dollars; refuses any amount that would need rounding."""
    scaled = usd.scaleb(12)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{usd} USD is not a whole number of pico-dollars")
    return int(scaled)


def from_pico(pico: int) -> Decimal:
    return Decimal(pico).scaleb(-12)


def usd_text(usd: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros ("0.0000123", "2")."""
    text = format(usd.normalize(), "f")
    return text if text != "-0" else "0"


def _check_price(name: str, value: Decimal) -> None:
    if value < 0 or not value.is_finite():
        raise ValueError(f"{name} price must be a finite amount >= 0, got {value}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_PRICE_PLACES:
        raise ValueError(f"{name} price {value} has more than {_MAX_PRICE_PLACES} decimals")


@dataclass(frozen=True)
class Price:
    """USD per 1M prompt, completion and cached-prompt tokens."""

    prompt: Decimal = _ZERO
    completion: Decimal = _ZERO
    cached_prompt: Decimal = _ZERO
    cache_hit_prompt: Decimal = _ZERO  # a response served from the response cache
    cache_hit_completion: Decimal = _ZERO
    batch_prompt: Decimal | None = None  # lines of a batch (default: the online prices)
    batch_completion: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("prompt", "completion", "cached_prompt", "cache_hit_prompt",
                     "cache_hit_completion", "batch_prompt", "batch_completion"):
            if getattr(self, name) is not None:
                _check_price(name, getattr(self, name))

    def for_batch(self) -> Price:
        """The prices a batch line pays (cached prompt tokens never cost more than others)."""
        prompt = self.prompt if self.batch_prompt is None else self.batch_prompt
        completion = self.completion if self.batch_completion is None else self.batch_completion
        return Price(prompt, completion, min(self.cached_prompt, prompt),
                     self.cache_hit_prompt, self.cache_hit_completion)

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost: uncached prompt, cached prompt and completion tokens at their prices."""
        uncached = usage.prompt_tokens - usage.cached_tokens
        micro = (uncached * self.prompt + usage.cached_tokens * self.cached_prompt
                 + usage.completion_tokens * self.completion)
        return micro.scaleb(-6)

    def cache_hit_cost(self, usage: Usage) -> Decimal:
        """A response-cache hit: its tokens at the cache-hit prices (no engine ran)."""
        micro = (usage.prompt_tokens * self.cache_hit_prompt
                 + usage.completion_tokens * self.cache_hit_completion)
        return micro.scaleb(-6)

    def worst_case(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """The most a request can cost before we know how much of its prompt is cached."""
        prompt_price = max(self.prompt, self.cached_prompt)
        return (prompt_tokens * prompt_price + completion_tokens * self.completion).scaleb(-6)


FREE = Price()


@dataclass(frozen=True)
class PriceBook:
    """Model prices, with optional per-tenant overrides; unknown models are free."""

    models: Mapping[str, Price] = field(default_factory=dict)
    tenants: Mapping[str, Mapping[str, Price]] = field(default_factory=dict)

    def price(self, tenant: str, model: str) -> Price:
        override = self.tenants.get(tenant, {}).get(model)
        if override is not None:
            return override
        return self.models.get(model, FREE)
