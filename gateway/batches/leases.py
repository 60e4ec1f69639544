"""Leases: a running batch line, and a batch being finalized, belong to one instance for
as long as it keeps renewing them.

Claiming a line is a conditional update (only one claim wins, across gateway replicas)
that stamps the claimer (``owner``), the time (``heartbeat_at``) and a new attempt. The
instance renews its leases every ``lease_s / 3``; a lease not renewed for ``lease_s`` (its
instance died, hung, lost the database, or came back under a new instance id) lapses, and
any instance puts the line back to pending to run it again. Every write about a line is
conditional on the attempt still being its owner's, so an instance that lost a lease can
neither finish the line nor bill its answer (``still_held``, checked at settlement). A batch
being finalized is leased the same way (``take_over`` when its finalizer's lease lapsed).

A lapsed lease is a failed attempt, like one that failed on the engine or ran out of time
(``fail``): the line runs again until ``max_attempts`` attempts have failed, then it fails
for good with an error-file line naming the last failure. So a line that kills or stalls
every gateway that runs it (a poison pill) stops after ``max_attempts``, wherever it ran.

The lease counts time on the instances' clocks: keep them within a small part of
``lease_s`` of each other (NTP does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.batches.results import error_line
from gateway.batches.tables import DONE, FAILED, PENDING, RUNNING, BatchLineRow, BatchRow
from gateway.metering.ledger import utcnow


@dataclass(frozen=True)
class ClaimedLine:
    batch_id: str
    line: int
    custom_id: str
    body: dict[str, Any]
    attempt: int
    failures: int = 0  # attempts of this line that failed before this one

    def __post_init__(self) -> None:
        if self.attempt < 1 or self.line < 0 or not 0 <= self.failures < self.attempt:
            raise ValueError("a claimed line has a line number >= 0, an attempt >= 1 and "
                             "fewer earlier failures than attempts")

    @property
    def key(self) -> tuple[str, int]:
        return self.batch_id, self.line

    @property
    def request_id(self) -> str:
        return f"{self.batch_id}-{self.line}-{self.attempt}"  # one ledger row per attempt

    def earlier_request_ids(self) -> list[str]:
        return [f"{self.batch_id}-{self.line}-{k}" for k in range(1, self.attempt)]


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed, as the error-file line will say if it was the last."""

    code: str
    message: str

    def __post_init__(self) -> None:
        if not self.code or not self.message:
            raise ValueError("a failure has a code and a message")


WORKER_LOST = Failure("worker_lost", "the gateway running this request stopped (it died or "
                                     "stalled) before finishing it")


class Leases:
    def __init__(self, engine: AsyncEngine, owner: str, lease_s: float,
                 clock: Callable[[], datetime] = utcnow, max_attempts: int = 3) -> None:
        if not owner or lease_s <= 0 or max_attempts < 1:
            raise ValueError("a lease has an owner, lease_s > 0 and max_attempts >= 1")
        self.owner, self.lease_s, self.max_attempts = owner, lease_s, max_attempts
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def _lapsed(self, column: Any) -> ColumnElement[bool]:
        """A heartbeat older than the lease (or none: a lease from before leases)."""
        return or_(column.is_(None), column < self._clock() - timedelta(seconds=self.lease_s))

    def _held(self, line: ClaimedLine) -> ColumnElement[bool]:
        return ((BatchLineRow.batch_id == line.batch_id) & (BatchLineRow.line == line.line)
                & (BatchLineRow.status == RUNNING) & (BatchLineRow.owner == self.owner)
                & (BatchLineRow.attempts == line.attempt))

    async def _update(self, statement: Any) -> int:
        async with self._sessions.begin() as session:
            return int(getattr(await session.execute(statement), "rowcount", 0))

    async def claim(self, batch_id: str, limit: int) -> list[ClaimedLine]:
        pending = (select(BatchLineRow).where(BatchLineRow.batch_id == batch_id,
                                              BatchLineRow.status == PENDING)
                   .order_by(BatchLineRow.line).limit(limit))
        async with self._sessions() as session:
            candidates = (await session.scalars(pending)).all()
        claimed = []
        for row in candidates:
            grab = (update(BatchLineRow)
                    .where(BatchLineRow.batch_id == batch_id, BatchLineRow.line == row.line,
                           BatchLineRow.status == PENDING,
                           BatchLineRow.attempts == row.attempts)
                    .values(status=RUNNING, owner=self.owner, attempts=row.attempts + 1,
                            heartbeat_at=self._clock()))
            if await self._update(grab) == 1:
                claimed.append(ClaimedLine(batch_id, row.line, row.custom_id,
                                           json.loads(row.body_json), row.attempts + 1,
                                           row.failed_attempts))
        return claimed

    async def still_held(self, line: ClaimedLine) -> bool:
        """Renew this one lease; False when it was lost (the line is someone else's)."""
        renew = update(BatchLineRow).where(self._held(line)).values(heartbeat_at=self._clock())
        return await self._update(renew) == 1

    async def renew(self, lines: Iterable[ClaimedLine]) -> list[ClaimedLine]:
        """Renew these leases; returns the lines whose lease was lost."""
        return [line for line in lines if not await self.still_held(line)]

    async def finish(self, line: ClaimedLine, status: str, result: dict[str, Any]) -> bool:
        """Store the line's result, if this attempt still holds it."""
        if status not in (DONE, FAILED):
            raise ValueError(f"a line finishes {DONE} or {FAILED}, not {status!r}")
        done = (update(BatchLineRow).where(self._held(line))
                .values(status=status, result_json=json.dumps(result), heartbeat_at=None))
        return await self._update(done) == 1

    async def fail(self, line: ClaimedLine, failure: Failure) -> bool:
        """This attempt failed: the line goes back to pending, or fails for good once
        ``max_attempts`` attempts failed. False if the attempt no longer holds the line."""
        return await self._update(self._failed(self._held(line), line.custom_id,
                                               line.failures, failure)) == 1

    def _failed(self, where: ColumnElement[bool], custom_id: str, failures: int,
                failure: Failure) -> Update:
        count = failures + 1
        values: dict[str, Any] = {"status": PENDING, "failed_attempts": count, "owner": None,
                                  "heartbeat_at": None}
        if count >= self.max_attempts:
            message = f"{failure.message} (attempt {count} of {self.max_attempts}; not retried)"
            values.update(status=FAILED,
                          result_json=json.dumps(error_line(custom_id, failure.code, message)))
        return (update(BatchLineRow).where(where, BatchLineRow.failed_attempts == failures)
                .values(**values))

    async def release(self, line: ClaimedLine | None = None) -> int:
        """Back to pending, not a failure: this attempt (a limit to wait out), or every
        line this instance runs (shutting down)."""
        mine = (self._held(line) if line is not None else
                (BatchLineRow.status == RUNNING) & (BatchLineRow.owner == self.owner))
        back = update(BatchLineRow).where(mine).values(status=PENDING, owner=None,
                                                         heartbeat_at=None)
        return await self._update(back)

    async def expire(self) -> int:
        """Lines whose lease lapsed, whoever held them: a failed attempt each."""
        return await self._fail_running(self._lapsed(BatchLineRow.heartbeat_at), WORKER_LOST)

    async def abandoned(self) -> int:
        """Lines this instance still holds as it starts (it stopped without giving them
        back: a crash, under the same instance id): a failed attempt each."""
        return await self._fail_running(BatchLineRow.owner == self.owner, WORKER_LOST)

    async def _fail_running(self, which: ColumnElement[bool], failure: Failure) -> int:
        running = select(BatchLineRow.batch_id, BatchLineRow.line, BatchLineRow.custom_id,
                         BatchLineRow.attempts, BatchLineRow.failed_attempts).where(
            BatchLineRow.status == RUNNING, which)
        async with self._sessions() as session:
            rows = (await session.execute(running)).all()
        failed = 0
        for row in rows:  # each conditional on its attempt: one writer wins
            this = ((BatchLineRow.batch_id == row.batch_id) & (BatchLineRow.line == row.line)
                    & (BatchLineRow.status == RUNNING) & (BatchLineRow.attempts == row.attempts)
                    & which)
            failed += await self._update(self._failed(this, row.custom_id,
                                                      row.failed_attempts, failure))
        return failed

    async def start_finalizing(self, row: BatchRow) -> bool:
        """Move an active batch to ``finalizing``, leased to this instance."""
        now = self._clock()
        start = (update(BatchRow).where(BatchRow.id == row.id, BatchRow.status == row.status)
                 .values(status="finalizing", finalizing_at=now, owner=self.owner,
                         heartbeat_at=now))
        return await self._update(start) == 1

    def finalizer_lapsed(self, row: BatchRow) -> bool:
        deadline = self._clock() - timedelta(seconds=self.lease_s)
        return row.heartbeat_at is None or row.heartbeat_at < deadline

    async def take_over(self, row: BatchRow) -> bool:
        """Finalize a batch whose finalizer's lease lapsed (it died while writing)."""
        take = (update(BatchRow)
                .where(BatchRow.id == row.id, BatchRow.status == "finalizing",
                       self._lapsed(BatchRow.heartbeat_at))
                .values(owner=self.owner, heartbeat_at=self._clock()))
        return await self._update(take) == 1
