"""Prometheus counters for billed tokens and cost, by model and tenant.

They count exactly what the ledger settles (``billing.billable_usage``), on the
``CollectorRegistry`` that /metrics serves (passed in by ``build_state``). Request,
latency and 429 counters live in gateway/observability. Tenant labels are bounded: the
first ``max_tenants`` tenants seen get their own label, later ones share ``other``.
"""

from __future__ import annotations

from collections.abc import Sized
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge

OTHER = "other"


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry, max_tenants: int = 100) -> None:
        self._max_tenants = max_tenants
        self._tenants: set[str] = set()
        self.tokens = Counter(
            "llmgw_billed_tokens",
            "Tokens billed in the ledger, by kind (uncached_prompt, cached_prompt, completion).",
            ["model", "tenant", "kind"], registry=registry)
        # The one cost counter (exported as llmgw_cost_total; the dashboards read it):
        # ledger-exact, so batch lines, cache hits and upstream relays are in it too.
        self.cost = Counter("llmgw_cost", "Billed cost as settled in the ledger, in the "
                            "price list's currency.", ["model", "tenant"], registry=registry)
        self.pending = Gauge("llmgw_ledger_settlements_pending", "Settlements waiting for the "
                             "ledger database to come back (billed once it does).",
                             registry=registry)

    def watch_backlog(self, backlog: Sized) -> None:
        self.pending.set_function(lambda: len(backlog))

    def tenant_label(self, tenant: str) -> str:
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < self._max_tenants:
            self._tenants.add(tenant)
            return tenant
        return OTHER

    def settled(self, model: str, tenant: str, prompt: int, cached: int, completion: int,
                cost: Decimal) -> None:
        label = self.tenant_label(tenant)
        self.tokens.labels(model, label, "uncached_prompt").inc(prompt - cached)
        self.tokens.labels(model, label, "cached_prompt").inc(cached)
        self.tokens.labels(model, label, "completion").inc(completion)
        self.cost.labels(model, label).inc(float(cost))
