"""The pool's slots, shared fairly: at most ``total`` jobs at once and at most
``per_tenant`` of one tenant's, so one tenant can never hold all of them.

A job waits first for its tenant's share (at most ``max_waiting`` of a tenant's jobs wait
there; more are refused at once), then for a free slot; waits are served in arrival
order and bounded by a deadline: still waiting for its own share, a 429 (the tenant is
using it); for a slot, a 503 (the pool is saturated).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.serving.offload.outcome import pool_busy, share_busy


@dataclass
class _Share:
    permits: asyncio.Semaphore
    users: int = 0  # jobs holding or waiting for the share
    waiting: int = 0  # jobs waiting for it


@dataclass
class Lease:
    """One slot and one of its tenant's share, until ``release`` (idempotent)."""

    slots: FairSlots
    tenant: str
    share: _Share
    released: bool = field(default=False)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slots.give_back(self)


class FairSlots:
    def __init__(self, total: int, per_tenant: int, max_waiting: int) -> None:
        if not 1 <= per_tenant <= total or max_waiting < 0:
            raise ValueError("1 <= per_tenant <= total, and max_waiting >= 0")
        self.total, self.per_tenant, self.max_waiting = total, per_tenant, max_waiting
        self.in_use = 0
        self._free = asyncio.Semaphore(total)
        self._shares: dict[str, _Share] = {}

    async def acquire(self, tenant: str, timeout_s: float) -> Lease:
        share = self._shares.setdefault(tenant, _Share(asyncio.Semaphore(self.per_tenant)))
        if share.permits.locked() and share.waiting >= self.max_waiting:
            raise share_busy(f"{share.waiting} waiting")
        share.users += 1
        own = False
        try:
            async with asyncio.timeout(timeout_s):
                share.waiting += 1
                try:
                    await share.permits.acquire()
                finally:
                    share.waiting -= 1
                own = True
                await self._free.acquire()
        except BaseException as exc:
            if own:
                share.permits.release()
            self._leave(tenant, share)
            if isinstance(exc, TimeoutError):
                raise (pool_busy(timeout_s) if own else share_busy(
                    f"its {self.per_tenant} of {self.total} planning workers stayed busy for "
                    f"{timeout_s:g} s")) from None
            raise
        self.in_use += 1
        return Lease(self, tenant, share)

    def give_back(self, lease: Lease) -> None:
        self.in_use -= 1
        self._free.release()
        lease.share.permits.release()
        self._leave(lease.tenant, lease.share)

    def _leave(self, tenant: str, share: _Share) -> None:
        share.users -= 1
        if share.users == 0 and self._shares.get(tenant) is share:
            del self._shares[tenant]
