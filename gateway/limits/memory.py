"""Limits for one gateway process: counters in memory behind one asyncio lock."""

from __future__ import annotations

import asyncio

from gateway.limits.quota import Claim, Demand, Hold, SpendSeed, Windows, windows_of
from gateway.limits.refusal import first_exceeded, refusal

DEFAULT_LEASE_S = 3600.0  # a parallel slot never settled (a bug, a crash) frees itself


def _period_key(claim: Claim, windows: Windows) -> tuple[str, str, int]:
    return claim.subject.id, windows.period_id, claim.revision


class InProcessLimiter:
    """RPM/TPM per fixed minute, budget per day or month (seeded from the ledger), and
    requests in flight (a request holds one parallel slot per sequence it starts); a
    request is held against all of its claims or none."""

    def __init__(self, seed: SpendSeed, lease_s: float = DEFAULT_LEASE_S) -> None:
        self._seed = seed
        self._lease_s = lease_s
        self._lock = asyncio.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._spent: dict[tuple[str, str, int], int] = {}
        # subject -> request id -> (lease end, parallel slots held)
        self._running: dict[str, dict[str, tuple[float, int]]] = {}
        self._pruned_minute = 0

    async def admit(self, demand: Demand, now: float) -> None:
        """``reserve``'s checks without taking anything; a budget not seeded yet from the
        ledger counts as unspent (``reserve`` seeds it and decides)."""
        windows = windows_of(demand, now)
        async with self._lock:
            self._prune(windows[0].minute, now, demand)
            for claim, window in zip(demand.claims, windows, strict=True):
                self._check(claim, demand, window, now)

    async def reserve(self, demand: Demand, now: float) -> Hold:
        windows = windows_of(demand, now)
        async with self._lock:
            self._prune(windows[0].minute, now, demand)
            await self._seed_budgets(demand, windows)
            for claim, window in zip(demand.claims, windows, strict=True):
                self._check(claim, demand, window, now)
            for claim, window in zip(demand.claims, windows, strict=True):
                self._take(claim, demand, window, now)
        return Hold(demand, windows)

    async def _seed_budgets(self, demand: Demand, windows: tuple[Windows, ...]) -> None:
        for claim, window in zip(demand.claims, windows, strict=True):
            period = _period_key(claim, window)
            if claim.quota.budget_usd is not None and period not in self._spent:
                self._spent[period] = await self._seed(claim.subject, window.period_starts)

    def _check(self, claim: Claim, demand: Demand, window: Windows, now: float) -> None:
        subject, charge = claim.subject.id, demand.charge
        running = sum(slots for _, slots in self._running.get(subject, {}).values())
        exceeded = first_exceeded(
            claim, charge, self._requests.get((subject, window.minute), 0),
            self._tokens.get((subject, window.minute), 0),
            self._spent.get(_period_key(claim, window), 0), running, demand.slots)
        if exceeded is not None:
            raise refusal(exceeded, claim, charge, window, now, demand.slots)

    def _take(self, claim: Claim, demand: Demand, window: Windows, now: float) -> None:
        minute = (claim.subject.id, window.minute)
        self._requests[minute] = self._requests.get(minute, 0) + 1
        self._tokens[minute] = self._tokens.get(minute, 0) + demand.charge.tokens
        if claim.quota.budget_usd is not None:
            self._spent[_period_key(claim, window)] += demand.charge.cost_nano
        if claim.max_parallel is not None:
            running = self._running.setdefault(claim.subject.id, {})
            running[demand.request_id] = (now + self._lease_s, demand.slots)

    async def settle(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        demand = hold.demand
        async with self._lock:
            for claim, window in zip(demand.claims, hold.windows, strict=True):
                minute = (claim.subject.id, window.minute)
                if minute in self._tokens:
                    self._tokens[minute] -= demand.charge.tokens - tokens
                period = _period_key(claim, window)
                if claim.quota.budget_usd is not None and period in self._spent:
                    self._spent[period] += cost_nano - demand.charge.cost_nano
                running = self._running.get(claim.subject.id)
                if running is not None:
                    running.pop(demand.request_id, None)

    def _prune(self, minute: int, now: float, demand: Demand) -> None:
        for claim in demand.claims:
            running = self._running.get(claim.subject.id)
            if running:
                for request_id in [r for r, (ends, _) in running.items() if ends <= now]:
                    del running[request_id]
        if minute == self._pruned_minute:
            return
        self._pruned_minute = minute
        for counter in (self._requests, self._tokens):
            for key in [k for k in counter if k[1] < minute]:
                del counter[key]

    async def close(self) -> None:
        return None
