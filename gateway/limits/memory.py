"""Limits for one gateway process: counters in memory behind one asyncio lock."""

from __future__ import annotations

import asyncio

from gateway.limits.quota import Charge, Hold, Quota, SpendSeed, Windows
from gateway.limits.refusal import first_exceeded, refusal


class InProcessLimiter:
    """RPM/TPM per fixed minute, budget per day or month (seeded from the ledger)."""

    def __init__(self, seed: SpendSeed) -> None:
        self._seed = seed
        self._lock = asyncio.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._spent: dict[tuple[str, str], int] = {}
        self._pruned_minute = 0

    async def reserve(self, subject: str, quota: Quota, charge: Charge, now: float) -> Hold:
        windows = Windows.at(now, quota.budget_period)
        minute = (subject, windows.minute)
        period = (subject, windows.period_id)
        async with self._lock:
            self._prune(windows.minute)
            if quota.budget_usd is not None and period not in self._spent:
                self._spent[period] = await self._seed(subject, windows.period_starts)
            exceeded = first_exceeded(
                quota, charge, self._requests.get(minute, 0), self._tokens.get(minute, 0),
                self._spent.get(period, 0))
            if exceeded is not None:
                raise refusal(exceeded, quota, charge, windows, now)
            self._requests[minute] = self._requests.get(minute, 0) + 1
            self._tokens[minute] = self._tokens.get(minute, 0) + charge.tokens
            if quota.budget_usd is not None:
                self._spent[period] += charge.cost_nano
        return Hold(subject, charge, windows)

    async def settle(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        minute = (hold.subject, hold.windows.minute)
        period = (hold.subject, hold.windows.period_id)
        async with self._lock:
            if minute in self._tokens:
                self._tokens[minute] -= hold.charge.tokens - tokens
            if period in self._spent:
                self._spent[period] += cost_nano - hold.charge.cost_nano

    def _prune(self, minute: int) -> None:
        if minute == self._pruned_minute:
            return
        self._pruned_minute = minute
        for counter in (self._requests, self._tokens):
            for key in [k for k in counter if k[1] < minute]:
                del counter[key]

    async def close(self) -> None:
        return None
