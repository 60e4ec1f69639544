"""Settlements the ledger could not take when their request ended, retried until it does.

A request that got tokens is billed even when the ledger database is down, restarting or
out of pool connections as it ends: after the brief inline retries its settlement is written
to the settlement journal (``journal.py``, fsynced) and only then queued here, retried in the
background (backing off up to 30 s) until the database takes it. Settling writes only a row
that is still open, so a retry that lands after startup recovery closed the row (another
instance, past ``orphan_after_s``) changes nothing. A gateway that stops or is killed before
the database is back leaves its settlements in the journal: ``replay`` at the next start
settles them before recovery closes this instance's open rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway.metering.journal import PendingSettlement, SettlementJournal
from gateway.metering.ledger import Settlement
from gateway.metering.outage import is_database_outage

log = logging.getLogger("llm_gateway.metering")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

Settle = Callable[[str, Settlement], Awaitable[bool]]
OnSettled = Callable[[PendingSettlement], None]  # counts it in the metrics once billed


def _ignore(pending: PendingSettlement) -> None:
    del pending


class SettlementBacklog:
    def __init__(self, settle: Settle, journal: SettlementJournal | None = None,
                 on_settled: OnSettled = _ignore,
                 backoff_s: tuple[float, ...] | None = None) -> None:
        self._backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        if not self._backoff_s or min(self._backoff_s) <= 0:
            raise ValueError("backoff_s lists positive delays")
        self._settle = settle
        self._journal = journal
        self._on_settled = on_settled
        self._pending: dict[str, PendingSettlement] = {}
        self._task: asyncio.Task[None] | None = None
        self._files = asyncio.Lock()  # one journal operation at a time, with _pending

    def __len__(self) -> int:
        return len(self._pending)

    async def add(self, pending: PendingSettlement) -> None:
        """Journal it (durably), then queue it for the background retries."""
        async with self._files:
            if self._journal is not None:
                try:
                    await asyncio.to_thread(self._journal.append, pending)
                except OSError:
                    log.exception("could not journal the settlement of %s; it waits in "
                                  "memory only (lost if the gateway dies first)",
                                  pending.request_id)
            self._pending[pending.request_id] = pending
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="ledger-backlog")

    async def replay(self) -> int:
        """Settle what the journal holds (a gateway that died or stopped with settlements
        queued). Runs at start, before recovery closes this instance's open rows; a database
        outage meanwhile is raised (the journal keeps every entry). Returns the entries read."""
        if self._journal is None:
            return 0
        found = await asyncio.to_thread(self._journal.read)
        for pending in found:
            self._pending.setdefault(pending.request_id, pending)
        for pending in list(self._pending.values()):
            await self._settle_one(pending, replayed=True)
        await self._compact()
        if found:
            log.warning("settled %d settlements the journal held from before this start",
                        len(found))
        return len(found)

    async def _retry(self) -> None:
        failures = 0
        while self._pending:
            await asyncio.sleep(self._backoff_s[min(failures, len(self._backoff_s) - 1)])
            failures = 0 if await self.try_all() else failures + 1

    async def try_all(self) -> bool:
        """Settle what is pending; False when the database still fails."""
        before = len(self._pending)
        drained = True
        try:
            for pending in list(self._pending.values()):
                await self._settle_one(pending, replayed=False)
        except Exception:  # _settle_one raises only a database outage
            log.warning("ledger still unavailable; %d settlements pending", len(self._pending))
            drained = False
        if len(self._pending) < before:
            await self._compact()
        return drained

    async def _settle_one(self, pending: PendingSettlement, *, replayed: bool) -> None:
        """One settlement; a database outage is raised and leaves it pending."""
        try:
            settled = await self._settle(pending.request_id, pending.result)
        except Exception as exc:
            if is_database_outage(exc):
                raise
            log.exception("settling %s failed; its row is left to recovery", pending.request_id)
            settled = False
        self._pending.pop(pending.request_id, None)
        if settled:
            self._on_settled(pending)
        elif replayed:
            log.info("ledger row %s was already settled before the journal's replay",
                     pending.request_id)
        else:
            log.error("ledger row %s was closed before its settlement", pending.request_id)

    async def _compact(self) -> None:
        """The journal rewritten with what still waits (removed when nothing does)."""
        if self._journal is None:
            return
        async with self._files:
            try:
                await asyncio.to_thread(self._journal.rewrite, list(self._pending.values()))
            except OSError:
                log.exception("could not compact the settlement journal %s (replaying it "
                              "settles nothing twice)", self._journal.path)

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
            where = ("the settlement journal keeps them for the next start"
                     if self._journal is not None else "startup recovery closes their rows")
            log.error("%d settlements could not be written; %s", len(self._pending), where)
