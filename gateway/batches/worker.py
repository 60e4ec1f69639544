"""The background worker that runs batches on the engine, behind online traffic.

Each poll it claims pending lines of running batches, at most ``batches.concurrency`` in
flight, and only while no more than ``batches.yield_above`` online requests are running
or waiting on the engines: online traffic keeps its latency, batches fill the gaps.
A batch whose lines are all finished is finalized (output and error files written,
``completed``); a cancelled or expired one stops claiming, lets its in-flight lines
finish and is finalized with what it has.

Every ``lease_s / 3`` it renews the leases of its lines (a line whose lease was lost is
cancelled: it is someone else's now), counts a failed attempt for each line whose lease
lapsed, whoever held them, and deletes expired files. A failing step (the database away)
is logged and the next poll tries again: the worker never dies of it.

An attempt has ``line_timeout_s``; one that runs out of it, fails on the engine, crashes,
or whose gateway died or stalled holding it (a lapsed lease, or lines this instance still
held when it started again) is a failed attempt: the line runs again until
``max_attempts`` attempts failed, then it is an error-file line. A bad line costs its own
attempts, never its batch's or another tenant's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.auth.key_store import KeyStore
from gateway.batches.executor import (
    AnsweredBefore,
    AttemptFailed,
    MayBill,
    RetryLater,
    result_line,
    run_line,
)
from gateway.batches.files import FileStore
from gateway.batches.leases import ClaimedLine, Failure, Leases
from gateway.batches.output import Finalizer
from gateway.batches.store import BatchStore, is_expired
from gateway.batches.tables import PENDING, RUNNING, BatchRow
from gateway.errors import AuthenticationError
from gateway.metering.ledger import utcnow
from gateway.metering.outage import is_database_outage
from gateway.serving.accounting import Principal
from gateway.serving.pipeline import Pipeline
from gateway.settings import BatchSettings

log = logging.getLogger("llm_gateway.batches")
FINISH_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # a result the database would not take yet
CRASHED = Failure("server_error", "The server had an error while processing your request.")


@dataclasses.dataclass(frozen=True)
class WorkerParts:
    store: BatchStore
    leases: Leases
    finalizer: Finalizer
    files: FileStore
    keys: KeyStore


class BatchWorker:
    def __init__(self, pipeline: Pipeline, billed: AnsweredBefore, parts: WorkerParts,
                 settings: BatchSettings, drain_timeout_s: float) -> None:
        self._pipeline, self._billed, self._parts = pipeline, billed, parts
        self._settings, self._drain_timeout_s = settings, drain_timeout_s
        self._inflight: dict[tuple[str, int], tuple[ClaimedLine, asyncio.Task[None]]] = {}
        self._not_before: dict[str, float] = {}  # a batch backing off after a limit
        self._maintained = float("-inf")

    async def run(self) -> None:
        abandoned = await _safely(self._parts.leases.abandoned)
        if abandoned:
            log.warning("%d batch lines this instance left running: a failed attempt each",
                        abandoned)
        try:
            while True:
                await _safely(self.step)
                await asyncio.sleep(self._settings.poll_interval_s)
        finally:
            await self._drain()

    async def step(self) -> None:
        await self._maintain()
        rows = await self._parts.store.active()
        running = sum(1 for row in rows if row.status == "in_progress")
        for row in rows:
            await self._visit(row, running)

    async def _maintain(self) -> None:
        if time.monotonic() - self._maintained < self._settings.lease_s / 3:
            return
        self._maintained = time.monotonic()
        for line in await self._parts.leases.renew(line for line, _ in self._inflight.values()):
            log.warning("lost the lease of batch %s line %d: stopping it", *line.key)
            self._inflight[line.key][1].cancel()
        if lapsed := await self._parts.leases.expire():
            log.warning("%d batch lines whose lease lapsed: a failed attempt each", lapsed)
        if gone := await self._parts.files.delete_expired(utcnow()):
            log.info("deleted %d expired files", gone)

    async def _visit(self, row: BatchRow, running: int = 1) -> None:
        leases = self._parts.leases
        if row.status == "finalizing":  # finished by its finalizer, unless that one died
            if leases.finalizer_lapsed(row) and await leases.take_over(row):
                await self._finalize(row)
            return
        stopping = row.status == "cancelling" or is_expired(row, utcnow())
        if not stopping:
            await self._claim(row, running)
        if not any(key[0] == row.id for key in self._inflight):
            await self._maybe_finalize(row, stopping)

    def _online_load(self) -> int:
        stats = [m.engine.stats() for m in self._pipeline.models]
        engines = sum(s.running + s.waiting for s in stats)
        return max(0, engines - len(self._inflight))

    async def _claim(self, row: BatchRow, running: int = 1) -> None:
        """Lines of ``row`` up to its equal part of the worker's slots among the ``running``
        batches (so one batch cannot hold them all); the fair queue then orders the lines
        of all batches by tenant, below every online request (docs/fair-share.md)."""
        concurrency = self._settings.concurrency
        held = sum(1 for key in self._inflight if key[0] == row.id)
        room = min(concurrency - len(self._inflight), -(-concurrency // max(1, running)) - held)
        if room <= 0 or time.monotonic() < self._not_before.get(row.id, 0.0):
            return
        if self._online_load() > self._settings.yield_above:
            return
        principal = await self._principal(row)
        for line in await self._parts.leases.claim(row.id, room):
            if line.key in self._inflight:  # an earlier attempt here lost its lease
                self._inflight[line.key][1].cancel()
            task = asyncio.create_task(self._run(row, principal, line))
            self._inflight[line.key] = (line, task)
            task.add_done_callback(self._forget(line))

    def _forget(self, line: ClaimedLine) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._inflight.get(line.key, (None, None))[1] is task:
                del self._inflight[line.key]
        return done

    async def _principal(self, row: BatchRow) -> Principal:
        if row.key_id is None:
            return Principal(key_id=None, tenant=row.tenant)
        keys = self._parts.keys
        record = await keys.get(row.key_id)
        if record is None or not record.live(utcnow()):  # revoked or expired since
            return _REVOKED
        principal = await keys.principal(record)  # its models and its tenant's limits
        return dataclasses.replace(principal, response_cache=False)

    def _may_bill(self, line: ClaimedLine) -> MayBill:
        async def check() -> bool:
            try:
                if line.attempt > 1 and await self._billed(line.earlier_request_ids()):
                    return False
                return await self._parts.leases.still_held(line)
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                return True  # the tokens were generated: bill them (the ledger retries)
        return check

    async def _run(self, row: BatchRow, principal: Principal, line: ClaimedLine) -> None:
        leases = self._parts.leases
        try:
            status, result = await self._attempt(row, principal, line)
        except RetryLater as later:
            self._not_before[row.id] = time.monotonic() + later.after_s
            await _safely(lambda: leases.release(line))
            return
        except AttemptFailed as failed:
            failure = failed.failure
            log.warning("batch %s line %d: attempt %d failed (%s)", *line.key, line.attempt,
                        failure.code)
            await _safely(lambda: self._store(line, lambda: leases.fail(line, failure)))
            return
        await _safely(lambda: self._store(line, lambda: leases.finish(line, status, result)))

    async def _attempt(self, row: BatchRow, principal: Principal,
                       line: ClaimedLine) -> tuple[str, dict[str, object]]:
        """The line run once, within ``line_timeout_s``; running out of it or crashing is
        a failed attempt."""
        limit = self._settings.line_timeout_s
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                if principal is _REVOKED:
                    raise AuthenticationError(
                        "the key that created this batch was revoked or has expired")
                return await run_line(self._pipeline, self._may_bill(line), principal, line,
                                      row.endpoint)
        except AuthenticationError as exc:
            return "failed", result_line(line, 401, exc.envelope())
        except (RetryLater, AttemptFailed):
            raise
        except TimeoutError as exc:
            if not deadline.expired():
                raise AttemptFailed(CRASHED) from exc
            raise AttemptFailed(Failure("line_timeout", f"the request ran longer than the "
                                        f"batch line time limit ({limit:g} s)")) from exc
        except Exception as exc:
            log.exception("batch %s line %d crashed", row.id, line.line)
            raise AttemptFailed(CRASHED) from exc

    async def _store(self, line: ClaimedLine, write: Callable[[], Awaitable[bool]]) -> None:
        """Write the attempt's end (its result, or its failure), retrying while the
        database is away; nothing is written if the attempt lost the line."""
        for delay in (*FINISH_RETRY_S, None):
            try:
                if not await write():
                    log.warning("batch %s line %d was taken over; result dropped", *line.key)
                return
            except Exception as exc:
                if delay is None or not is_database_outage(exc):
                    raise
                await asyncio.sleep(delay)

    async def _maybe_finalize(self, row: BatchRow, stopping: bool) -> None:
        counts = await self._parts.store.counts(row.id)
        if counts.get(RUNNING, 0) or (counts.get(PENDING, 0) and not stopping):
            return  # lines left to run, or running elsewhere (until their lease lapses)
        if await self._parts.leases.start_finalizing(row):
            await self._finalize(row)

    async def _finalize(self, row: BatchRow) -> None:
        final = await self._parts.finalizer.finalize(row.id)
        log.info("batch %s %s", row.id, final or "finalized by another instance")

    async def _drain(self) -> None:
        """Shutting down: in-flight lines get ``limits.drain_timeout_s`` to finish; the rest
        are aborted and go back to pending for the next start."""
        tasks = [task for _, task in self._inflight.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self._drain_timeout_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _safely(self._parts.leases.release)


async def _safely(work: Callable[[], Awaitable[int | None]]) -> int | None:
    """``work()``, or None when it failed (logged; the database away is only a warning)."""
    try:
        return await work()
    except Exception as exc:
        if is_database_outage(exc):
            log.warning("batch worker: the database is unavailable (%r)", exc)
        else:
            log.exception("batch worker step failed")
        return None


_REVOKED = Principal(key_id=None, tenant="revoked-key")
