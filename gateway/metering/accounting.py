"""``Accounting`` with a ledger, prices and limits: reserve before dispatch, settle after.

``open`` refuses a model the key or its tenant may not use (403), holds the worst case
(prompt + max_tokens x n, at the dearer prompt price) and a parallel slot against the
key's and its tenant's limits at once (the stricter wins; 429), then writes the ledger
row; ``settle`` writes the actual tokens and exact cost once, releases the unused part
of the hold and the slots, and returns a ``Settled`` with the exact cost (the response's
``usage.cost`` and ``x-request-cost``). A request holds one parallel slot per engine
sequence it starts (``n`` x prompts); ``admit``, before planning, refuses what ``open``
would refuse for any plan (a limit already reached) without holding anything.

Faults: the ledger database unreachable or out of pool connections before dispatch is a
503 ``metering_unavailable`` (after a brief retry), the limiter's Redis a 503
``limiter_unavailable`` (or no limits, with ``redis_fail_open``); at settlement the ledger
is retried, then the settlement is journaled on local disk and waits in a
``SettlementBacklog`` until the database is back, so nothing the engine produced goes
unbilled because the ledger was slow, even if the gateway dies meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from gateway.auth.key_records import KeyPrincipal, may_use
from gateway.errors import (
    LimiterUnavailableError,
    MeteringUnavailableError,
    PermissionDeniedError,
)
from gateway.limits.quota import Charge, Demand, Hold, Limiter, to_nano_ceil
from gateway.limits.refusal import fanout_refusal
from gateway.metering.attribution_caps import AttributionCaps
from gateway.metering.backlog import SettlementBacklog
from gateway.metering.billing import billable_usage
from gateway.metering.journal import PendingSettlement, SettlementJournal
from gateway.metering.ledger import Ledger, Reservation, Settlement, utcnow
from gateway.metering.metrics import MeteringMetrics
from gateway.metering.outage import is_database_outage
from gateway.metering.pricing import Price, PriceBook, to_pico
from gateway.serving.accounting import Outcome, Principal, Settled, Ticket
from gateway.serving.adapters import AdapterCatalog
from gateway.serving.attribution import NOBODY, Attribution
from gateway.serving.plan import Reservable

log = logging.getLogger("llm_gateway.metering")
RESERVE_RETRY_DELAYS_S = (0.1,)  # then refuse before dispatch: 503
SETTLE_RETRY_DELAYS_S = (0.1, 0.5)  # then the backlog retries until the database is back
UNAVAILABLE_RETRY_AFTER_S = 5


def _unavailable(exc: BaseException) -> MeteringUnavailableError:
    log.warning("metering database unavailable before dispatch: %r", exc)
    return MeteringUnavailableError("the metering database is unavailable",
                                    retry_after=UNAVAILABLE_RETRY_AFTER_S)


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
            reasoning_tokens=usage.reasoning_tokens or 0,
        )
        await self._accounting.record(self._reservation, result, cost)
        if self._hold is not None:
            await self._accounting.release(self._hold, usage.total_tokens, to_nano_ceil(cost))
        return Settled(cost)


class MeteredAccounting:
    def __init__(self, ledger: Ledger, limiter: Limiter, prices: PriceBook,
                 metrics: MeteringMetrics | None, instance_id: str,
                 clock: Callable[[], float] = time.time, *,
                 limiter_fail_open: bool = False,
                 journal: SettlementJournal | None = None,
                 caps: AttributionCaps | None = None) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.prices = prices
        self.metrics = metrics
        self.instance_id = instance_id
        self.limiter_fail_open = limiter_fail_open
        self.backlog = SettlementBacklog(lambda rid, result: self.ledger.settle(rid, result),
                                         journal, self._count)
        self._clock = clock
        self.caps = caps or AttributionCaps(ledger, 10_000, 1_000)
        self.adapters: AdapterCatalog | None = None  # LoRA adapters: their prices and name

    def _price(self, principal: Principal, model: str, batch_id: str | None) -> Price:
        if not may_use(principal, model):
            raise PermissionDeniedError(
                f"This key may not use the model {model!r}.", param="model")
        price = self.prices.price(principal.tenant, model)
        adapter = self.adapters.get(model) if self.adapters is not None else None
        if adapter is not None and model not in self.prices.tenants.get(principal.tenant, {}):
            price = Price(adapter.prompt_price, adapter.completion_price, adapter.prompt_price)
        return price if batch_id is None else price.for_batch()

    def _adapter_of(self, model: str) -> str | None:
        """The ledger's ``adapter``: the model's name when it is a LoRA adapter."""
        if self.adapters is None or self.adapters.get(model) is None:
            return None
        return model

    async def admit(self, principal: Principal, model: str, request_id: str,
                    batch_id: str | None = None, attribution: Attribution = NOBODY) -> None:
        """Before planning: refuse what ``open`` would refuse for any plan of this call (a
        model the key may not use; a limit already reached: RPM, TPM or budget spent, every
        parallel slot taken), so a key over its limits costs no planning work. Holds
        nothing; ``open`` reserves the plan's worst case once it is known."""
        price = self._price(principal, model, batch_id)
        claims = (principal.claims(attribution.user) if isinstance(principal, KeyPrincipal)
                  else ())
        if not claims:
            return
        least = Charge(1, to_nano_ceil(price.worst_case(1, 0)))  # any plan: >= 1 prompt token
        try:
            await self.limiter.admit(Demand(request_id, principal.tenant, least, claims),
                                     self._clock())
        except LimiterUnavailableError:
            if not self.limiter_fail_open:
                raise

    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None, attribution: Attribution = NOBODY) -> Ticket:
        price = self._price(principal, plan.model, batch_id)
        worst = price.worst_case(plan.prompt_tokens, plan.completion_budget)
        now = utcnow()
        await self._check_caps(principal.tenant, attribution, now)
        hold = await self._hold(principal, request_id,
                                Charge(plan.worst_case_tokens, to_nano_ceil(worst)), plan,
                                attribution.user)
        entry = Reservation(
            request_id=request_id, key_id=principal.key_id, tenant=principal.tenant,
            model=plan.model, n=plan.choices, reserved_tokens=plan.worst_case_tokens,
            reserved_pico=to_pico(worst), instance_id=self.instance_id, created_at=now,
            batch_id=batch_id, attribution=attribution,
            adapter=self._adapter_of(plan.model),
        )
        try:
            await self._reserve(entry)
        except BaseException as exc:
            if hold is not None:
                await self.release(hold, 0, 0)
            if is_database_outage(exc):  # refuse before dispatch
                raise _unavailable(exc) from exc
            raise
        return MeteredTicket(self, entry, price, hold)

    async def _check_caps(self, tenant: str, attribution: Attribution, now: datetime) -> None:
        """A tenant's distinct end users and tags this month (seeded from the ledger)."""
        try:
            await self.caps.check(tenant, attribution, now)
        except Exception as exc:
            if is_database_outage(exc):
                raise _unavailable(exc) from exc
            raise

    async def _reserve(self, entry: Reservation) -> None:
        """Write the row, retrying a database outage briefly. A retry that finds the row
        already there means an earlier attempt did write it before its answer was lost."""
        for attempt, delay in enumerate((*RESERVE_RETRY_DELAYS_S, None)):
            try:
                await self.ledger.reserve(entry)
                return
            except IntegrityError:
                if attempt == 0 or await self.ledger.row(entry.request_id) is None:
                    raise
                return
            except Exception as exc:
                if delay is None or not is_database_outage(exc):
                    raise
                await asyncio.sleep(delay)

    async def _hold(self, principal: Principal, request_id: str, charge: Charge,
                    plan: Reservable, end_user: str | None) -> Hold | None:
        """The charge, and one parallel slot per engine sequence the plan starts, against
        the key's, the tenant's and the end user's limits at once."""
        claims = principal.claims(end_user) if isinstance(principal, KeyPrincipal) else ()
        if not claims:
            return None
        if (too_many := fanout_refusal(claims, plan.sequences, plan.fanout_param)) is not None:
            raise too_many
        demand = Demand(request_id, principal.tenant, charge, claims, plan.sequences)
        try:
            return await self.limiter.reserve(demand, self._clock())
        except LimiterUnavailableError:
            if not self.limiter_fail_open:
                raise
            log.warning("limiter unavailable: %s passes without limits (redis_fail_open)",
                        request_id)
            return None
        except Exception as exc:
            if is_database_outage(exc):  # a budget counter is seeded from the ledger
                raise _unavailable(exc) from exc
            raise

    async def release(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        """The limiter's part of settling. Redis down: the counters keep the worst case
        (safe: stricter) and the parallel slot frees itself when its lease ends."""
        try:
            await self.limiter.settle(hold, tokens, cost_nano)
        except LimiterUnavailableError:
            log.warning("limiter unavailable settling %s; its hold lapses with its lease",
                        hold.demand.request_id)

    async def record(self, entry: Reservation, result: Settlement, cost: Decimal) -> None:
        pending = PendingSettlement(entry.request_id, entry.model, entry.tenant, result, cost)
        try:
            settled = await self._settle_with_retries(entry.request_id, result)
        except Exception as exc:
            if is_database_outage(exc):
                log.warning("ledger unavailable settling %s; queued until it is back",
                            entry.request_id)
                await self.backlog.add(pending)  # journaled (fsynced) before it is queued
            else:  # a bug, not an outage: the row stays open for startup recovery
                log.exception("could not settle ledger row %s", entry.request_id)
            return
        if not settled:
            log.error("ledger row %s was already settled", entry.request_id)
            return
        self._count(pending)

    async def _settle_with_retries(self, request_id: str, result: Settlement) -> bool:
        """A database outage during settlement is retried briefly here (settling is
        idempotent: only an open row is written); past that it goes to the backlog."""
        for delay in SETTLE_RETRY_DELAYS_S:
            try:
                return await self.ledger.settle(request_id, result)
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("ledger unavailable settling %s; retrying in %.1f s",
                            request_id, delay)
                await asyncio.sleep(delay)
        return await self.ledger.settle(request_id, result)

    def _count(self, pending: PendingSettlement) -> None:
        if self.metrics is not None:
            result = pending.result
            self.metrics.settled(pending.model, pending.tenant, result.prompt_tokens,
                                 result.cached_tokens, result.completion_tokens, pending.cost)

    async def replay(self) -> int:
        """At start: settle what the settlement journal kept from before (see backlog)."""
        return await self.backlog.replay()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Settlements still waiting for the database get one last, bounded try."""
        await self.backlog.close(timeout_s)
