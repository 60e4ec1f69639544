"""Settlements the ledger could not take when their request ended, retried until it does.

A request that got tokens is billed even when the ledger database is down, restarting or
out of pool connections as it ends: after the brief inline retries its settlement waits
here and is retried in the background (backing off up to 30 s) until the database takes
it. Settling writes only a row that is still open, so a retry that lands after startup
recovery closed the row (another instance, past ``orphan_after_s``) changes nothing. Only
a gateway that stops before the database is back leaves its rows to startup recovery;
``close`` tries once more first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.metering.ledger import Settlement
from gateway.metering.outage import is_database_outage

log = logging.getLogger("llm_gateway.metering")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

Settle = Callable[[str, Settlement], Awaitable[bool]]


@dataclass(frozen=True)
class PendingSettlement:
    request_id: str
    result: Settlement
    on_settled: Callable[[], None]  # counts it in the metrics once the ledger has it

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("a pending settlement names its request")


class SettlementBacklog:
    def __init__(self, settle: Settle, backoff_s: tuple[float, ...] | None = None) -> None:
        self._backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        if not self._backoff_s or min(self._backoff_s) <= 0:
            raise ValueError("backoff_s lists positive delays")
        self._settle = settle
        self._pending: dict[str, PendingSettlement] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, pending: PendingSettlement) -> None:
        self._pending[pending.request_id] = pending
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="ledger-backlog")

    async def _retry(self) -> None:
        failures = 0
        while self._pending:
            await asyncio.sleep(self._backoff_s[min(failures, len(self._backoff_s) - 1)])
            failures = 0 if await self.try_all() else failures + 1

    async def try_all(self) -> bool:
        """Settle what is pending; False when the database still fails."""
        for pending in list(self._pending.values()):
            try:
                settled = await self._settle(pending.request_id, pending.result)
            except Exception as exc:
                if is_database_outage(exc):
                    log.warning("ledger still unavailable; %d settlements pending",
                                len(self._pending))
                    return False
                log.exception("settling %s failed; its row is left to recovery",
                              pending.request_id)
                settled = False
            del self._pending[pending.request_id]
            if settled:
                pending.on_settled()
            else:
                log.error("ledger row %s was closed before its settlement", pending.request_id)
        return True

    async def close(self, timeout_s: float) -> None:
        """Stop retrying in the background; one last try, bounded by ``timeout_s``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.try_all()
        if self._pending:
            log.error("%d settlements could not be written; startup recovery closes their rows",
                      len(self._pending))
