"""A metered gateway whose model ``overflow-gpt`` is relayed to a loopback upstream."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.settings import PriceSettings, PricingSettings, Settings, UpstreamSettings
from tests.gateway.metered import metered_settings
from tests.gateway.upstream.openai_upstream import UPSTREAM_KEY

OVERFLOW = "overflow-gpt"  # our name; the upstream calls it gpt-4o-mini
PRICE = PriceSettings(prompt=Decimal("0.15"), completion=Decimal("0.60"),
                      cached_prompt=Decimal("0.075"))


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", UPSTREAM_KEY)


def upstream_settings(database_url: str, base_url: str, **extra: object) -> Settings:
    base = metered_settings(database_url)
    upstream = UpstreamSettings(base_url=base_url, model="gpt-4o-mini",
                                api_key_env="TEST_UPSTREAM_KEY", **extra)  # type: ignore[arg-type]
    prices = PricingSettings(models={**base.prices.models, OVERFLOW: PRICE})
    return base.model_copy(update={"upstreams": {OVERFLOW: upstream}, "prices": prices})


def cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * PRICE.prompt + cached * Decimal("0.075")
            + completion * PRICE.completion) / 1_000_000
