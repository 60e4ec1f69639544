"""Prices and exact Decimal costs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.metering.pricing import Price, PriceBook, from_pico, to_pico, usd_text
from gateway.metering.service import price_book
from gateway.serving.tally import Usage
from gateway.settings import load_settings


def test_cost_when_prompt_partly_cached_then_each_part_at_its_price_exactly() -> None:
    price = Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
    usage = Usage(prompt_tokens=1000, completion_tokens=333, cached_tokens=400)
    expected = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 333 * Decimal("0.60")) / 10**6
    assert price.cost(usage) == expected == Decimal("0.0003198")


def test_cost_when_summed_over_many_requests_then_no_rounding_drift() -> None:
    price = Price(Decimal("0.000001"), Decimal("0.000003"))
    total = sum((price.cost(Usage(7, 11)) for _ in range(100_000)), Decimal(0))
    assert total == Decimal(100_000) * (7 * Decimal("0.000001") + 11 * Decimal("0.000003")) / 10**6
    assert to_pico(total) == 100_000 * 40


def test_worst_case_when_cached_price_unknown_then_full_prompt_price() -> None:
    price = Price(Decimal("1"), Decimal("2"), Decimal("0.5"))
    assert price.worst_case(10, 5) == Decimal("0.00002")


def test_price_when_more_than_six_decimals_then_refused() -> None:
    with pytest.raises(ValueError, match="decimals"):
        Price(Decimal("0.0000001"))
    with pytest.raises(ValueError):
        Price(Decimal("-1"))


def test_pico_when_round_trip_then_exact_and_text_plain() -> None:
    assert to_pico(Decimal("0.0000037")) == 3_700_000
    assert from_pico(3_700_000) == Decimal("0.0000037")
    assert usd_text(from_pico(3_700_000)) == "0.0000037"
    assert usd_text(Decimal("1E-12")) == "0.000000000001"
    with pytest.raises(ValueError):
        to_pico(Decimal("1E-13"))


def test_price_book_when_tenant_override_then_it_wins_and_unknown_model_is_free() -> None:
    book = PriceBook(models={"m": Price(Decimal(1))},
                     tenants={"vip": {"m": Price(Decimal("0.5"))}})
    assert book.price("vip", "m").prompt == Decimal("0.5")
    assert book.price("other", "m").prompt == Decimal(1)
    assert book.price("other", "unknown") == Price()


def test_configs_when_loaded_then_default_model_has_exact_prices() -> None:
    book = price_book(load_settings(profile="test").prices)
    price = book.price("anyone", "smollm2-135m-instruct")
    assert (price.prompt, price.completion, price.cached_prompt) == (
        Decimal("0.10"), Decimal("0.40"), Decimal("0.05"))
