"""Metering's Prometheus counters: exactly what the ledger settles, tenants bounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from gateway.metering.metrics import OTHER, MeteringMetrics


def test_settled_when_prompt_partly_cached_then_tokens_by_kind_and_cost_counted() -> None:
    registry = CollectorRegistry()
    metrics = MeteringMetrics(registry)
    metrics.settled("m", "acme", prompt=10, cached=4, completion=7, cost=Decimal("0.000125"))
    metrics.settled("m", "acme", prompt=2, cached=0, completion=1, cost=Decimal("0.000005"))

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("llmgw_billed_tokens_total", model="m", tenant="acme", kind="uncached_prompt") == 8
    assert get("llmgw_billed_tokens_total", model="m", tenant="acme", kind="cached_prompt") == 4
    assert get("llmgw_billed_tokens_total", model="m", tenant="acme", kind="completion") == 8
    assert get("llmgw_cost_total", model="m", tenant="acme") == pytest.approx(0.00013)


def test_tenant_label_when_cap_reached_then_later_tenants_share_other() -> None:
    metrics = MeteringMetrics(CollectorRegistry(), max_tenants=2)
    labels = [metrics.tenant_label(t) for t in ("a", "b", "c", "a", "d")]
    assert labels == ["a", "b", OTHER, "a", OTHER]
