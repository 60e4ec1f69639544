"""The background worker that runs batches on the engine, behind online traffic.

Each poll it claims pending lines of running batches, at most ``batches.concurrency`` in
flight, and only while no more than ``batches.yield_above`` online requests are running
or waiting on the engines: online traffic keeps its latency, batches fill the gaps.
A batch whose lines are all finished is finalized (output and error files written,
``completed``); a cancelled or expired one stops claiming, lets its in-flight lines
finish and is finalized with what it has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.auth.key_store import KeyStore
from gateway.batches.executor import BilledBefore, RetryLater, result_line, run_line
from gateway.batches.files import FileStore
from gateway.batches.store import BatchStore, ClaimedLine, is_expired
from gateway.batches.tables import DONE, PENDING, RUNNING, BatchRow
from gateway.errors import AuthenticationError
from gateway.metering.ledger import utcnow
from gateway.serving.accounting import Principal
from gateway.serving.pipeline import Pipeline
from gateway.settings import BatchSettings

log = logging.getLogger("llm_gateway.batches")


class BatchWorker:
    def __init__(self, pipeline: Pipeline, billed: BilledBefore | None, store: BatchStore,
                 files: FileStore, keys: KeyStore, settings: BatchSettings, owner: str,
                 drain_timeout_s: float) -> None:
        self._pipeline, self._billed = pipeline, billed
        self._store, self._files, self._keys = store, files, keys
        self._settings, self._owner, self._drain_timeout_s = settings, owner, drain_timeout_s
        self._inflight: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._not_before: dict[str, datetime] = {}  # a batch backing off after a limit

    async def run(self) -> None:
        released = await self._store.release(self._owner)
        if released:
            log.warning("re-queued %d batch lines this instance left running", released)
        try:
            while True:
                await self.step()
                await asyncio.sleep(self._settings.poll_interval_s)
        finally:
            await self._drain()

    async def step(self) -> None:
        for row in await self._store.active():
            if row.status == "finalizing":
                continue  # the instance that won finalization writes the files
            stopping = row.status == "cancelling" or is_expired(row, utcnow())
            if not stopping:
                await self._claim(row)
            if not self._busy_with(row.id):
                await self._maybe_finalize(row, stopping)

    def _busy_with(self, batch_id: str) -> bool:
        return any(key[0] == batch_id for key in self._inflight)

    def _online_load(self) -> int:
        stats = [m.engine.stats() for m in self._pipeline.models]
        engines = sum(s.running + s.waiting for s in stats)
        return max(0, engines - len(self._inflight))

    async def _claim(self, row: BatchRow) -> None:
        room = self._settings.concurrency - len(self._inflight)
        hold = self._not_before.get(row.id)
        if room <= 0 or (hold is not None and utcnow() < hold):
            return
        if self._online_load() > self._settings.yield_above:
            return
        principal = await self._principal(row)
        for line in await self._store.claim(row.id, self._owner, room):
            key = (row.id, line.line)
            task = asyncio.create_task(self._run(row, principal, line))
            self._inflight[key] = task
            task.add_done_callback(self._forget(key))

    def _forget(self, key: tuple[str, int]) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
        return done

    async def _principal(self, row: BatchRow) -> Principal:
        if row.key_id is None:
            return Principal(key_id=None, tenant=row.tenant)
        record = await self._keys.get(row.key_id)
        if record is None or not record.live(utcnow()):  # revoked or expired since
            return _REVOKED
        principal = await self._keys.principal(record)  # its models and its tenant's limits
        return dataclasses.replace(principal, response_cache=False)

    async def _run(self, row: BatchRow, principal: Principal, line: ClaimedLine) -> None:
        try:
            if principal is _REVOKED:
                raise AuthenticationError(
                    "the key that created this batch was revoked or has expired")
            status, result = await run_line(self._pipeline, self._billed, principal, line,
                                            row.endpoint)
        except RetryLater as later:
            self._not_before[row.id] = utcnow() + timedelta(seconds=later.after_s)
            await self._store.release(self._owner, row.id)
            return
        except AuthenticationError as exc:
            status, result = "failed", result_line(line, 401, exc.envelope())
        except Exception:
            log.exception("batch %s line %d crashed", row.id, line.line)
            await self._store.release(self._owner, row.id)
            return
        await self._store.finish(line, self._owner, status, result)

    async def _maybe_finalize(self, row: BatchRow, stopping: bool) -> None:
        counts = await self._store.counts(row.id)
        unfinished = counts.get(PENDING, 0) + counts.get(RUNNING, 0)
        if unfinished and not stopping:
            return
        if counts.get(RUNNING, 0):
            return  # another instance still runs lines of it
        final = ("expired" if row.status != "cancelling" and is_expired(row, utcnow())
                 else "cancelled" if row.status == "cancelling" else "completed")
        if not await self._store.set_status(row.id, "finalizing", (row.status,)):
            return
        output, errors = await self._write_files(row)
        await self._store.set_status(row.id, final, ("finalizing",),
                                     output_file_id=output, error_file_id=errors)
        log.info("batch %s %s", row.id, final)

    async def _write_files(self, row: BatchRow) -> tuple[str | None, str | None]:
        results = await self._store.results(row.id)
        done = [r for status, r in results if status == DONE]
        failed = [r for status, r in results if status != DONE]
        ids: list[str | None] = []
        for name, lines in ((f"{row.id}_output.jsonl", done), (f"{row.id}_errors.jsonl", failed)):
            if not lines:
                ids.append(None)
                continue
            content = ("\n".join(lines) + "\n").encode()
            ids.append((await self._files.create(row.tenant, name, "batch_output", content)).id)
        return ids[0], ids[1]

    async def _drain(self) -> None:
        """Shutting down: in-flight lines get ``limits.drain_timeout_s`` to finish; the rest
        are aborted and go back to pending for the next start."""
        tasks = list(self._inflight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self._drain_timeout_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._store.release(self._owner)


_REVOKED = Principal(key_id=None, tenant="revoked-key")

