"""``Accounting`` with a ledger, prices and limits: reserve before dispatch, settle after.

``open`` refuses a model the key or its tenant may not use (403), holds the worst case
(prompt + max_tokens x n, at the dearer prompt price) and a parallel slot against the
key's and its tenant's limits at once (the stricter wins; 429), then writes the ledger
row; ``settle`` writes the actual tokens and exact cost once, releases the unused part
of the hold and the slots, and returns a ``Settled`` with the exact cost (the response's
``usage.cost`` and ``x-request-cost``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy.exc import InterfaceError, OperationalError

from gateway.auth.key_records import KeyPrincipal, may_use
from gateway.errors import MeteringUnavailableError, PermissionDeniedError
from gateway.limits.quota import Charge, Demand, Hold, Limiter, to_nano_ceil
from gateway.metering.billing import billable_usage
from gateway.metering.ledger import Ledger, Reservation, Settlement, utcnow
from gateway.metering.metrics import MeteringMetrics
from gateway.metering.pricing import Price, PriceBook, to_pico
from gateway.serving.accounting import Outcome, Principal, Settled, Ticket
from gateway.serving.plan import Reservable

log = logging.getLogger("llm_gateway.metering")
SETTLE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)  # then give up: startup recovery closes the row


class MeteredTicket:
    def __init__(self, accounting: MeteredAccounting, reservation: Reservation,
                 price: Price, hold: Hold | None) -> None:
        self._accounting = accounting
        self._reservation = reservation
        self._price = price
        self._hold = hold
        self._result: Settled | None = None

    async def settle(self, outcome: Outcome) -> Settled:
        if self._result is None:
            self._result = await self._settle(outcome)
        return self._result

    async def _settle(self, outcome: Outcome) -> Settled:
        usage = billable_usage(outcome)
        cost = (self._price.cache_hit_cost(usage) if outcome.response_cached
                else self._price.cost(usage))
        spec = outcome.speculation
        result = Settlement(
            status=outcome.status, prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens, completion_tokens=usage.completion_tokens,
            cost_pico=to_pico(cost),
            spec_drafted_tokens=spec.drafted if spec else None,
            spec_accepted_tokens=spec.accepted if spec else None,
            ttft_ms=None if outcome.ttft_s is None else outcome.ttft_s * 1000,
            latency_ms=outcome.latency_s * 1000,
            estimated=outcome.estimated, response_cached=outcome.response_cached,
        )
        entry = self._reservation
        await self._accounting.record(entry, result, cost)
        if self._hold is not None:
            await self._accounting.limiter.settle(
                self._hold, usage.total_tokens, to_nano_ceil(cost))
        return Settled(cost)


class MeteredAccounting:
    def __init__(self, ledger: Ledger, limiter: Limiter, prices: PriceBook,
                 metrics: MeteringMetrics | None, instance_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.prices = prices
        self.metrics = metrics
        self.instance_id = instance_id
        self._clock = clock

    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None) -> Ticket:
        if not may_use(principal, plan.model):
            raise PermissionDeniedError(
                f"This key may not use the model {plan.model!r}.", param="model")
        price = self.prices.price(principal.tenant, plan.model)
        if batch_id is not None:
            price = price.for_batch()
        worst = price.worst_case(plan.prompt_tokens, plan.completion_budget)
        hold = await self._hold(principal, request_id,
                                Charge(plan.worst_case_tokens, to_nano_ceil(worst)))
        entry = Reservation(
            request_id=request_id, key_id=principal.key_id, tenant=principal.tenant,
            model=plan.model, n=plan.choices, reserved_tokens=plan.worst_case_tokens,
            reserved_pico=to_pico(worst), instance_id=self.instance_id, created_at=utcnow(),
            batch_id=batch_id,
        )
        try:
            await self.ledger.reserve(entry)
        except BaseException as exc:
            if hold is not None:
                await self.limiter.settle(hold, 0, 0)
            if isinstance(exc, OperationalError | InterfaceError):  # refuse before dispatch
                raise MeteringUnavailableError(
                    "the metering database is unavailable", retry_after=5) from exc
            raise
        return MeteredTicket(self, entry, price, hold)

    async def _hold(self, principal: Principal, request_id: str,
                    charge: Charge) -> Hold | None:
        claims = principal.claims() if isinstance(principal, KeyPrincipal) else ()
        if not claims:
            return None
        demand = Demand(request_id, principal.tenant, charge, claims)
        return await self.limiter.reserve(demand, self._clock())

    async def record(self, entry: Reservation, result: Settlement, cost: Decimal) -> None:
        try:
            if not await self._settle_with_retries(entry.request_id, result):
                log.error("ledger row %s was already settled", entry.request_id)
                return
        except Exception:  # the row stays open; startup recovery closes it
            log.exception("could not settle ledger row %s", entry.request_id)
            return
        self._count(entry, result, cost)

    async def _settle_with_retries(self, request_id: str, result: Settlement) -> bool:
        """A database outage during settlement is retried for a few seconds (settling is
        idempotent: only an open row is written); past that the row stays open."""
        for delay in SETTLE_RETRY_DELAYS_S:
            try:
                return await self.ledger.settle(request_id, result)
            except (OperationalError, InterfaceError):
                log.warning("ledger unavailable settling %s; retrying in %.1f s",
                            request_id, delay)
                await asyncio.sleep(delay)
        return await self.ledger.settle(request_id, result)

    def _count(self, entry: Reservation, result: Settlement, cost: Decimal) -> None:
        if self.metrics is not None:
            self.metrics.settled(entry.model, entry.tenant, result.prompt_tokens,
                                 result.cached_tokens, result.completion_tokens, cost)
