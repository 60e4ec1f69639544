"""Finalizing a batch: its output and error files, and its final status, in one
transaction.

The lines' results are read a page at a time, in input order, and written into the two
files chunk by chunk (``ChunkWriter``): memory stays bounded however large the batch.
The final status is written only if this instance still holds the batch's finalization
lease; otherwise everything it wrote is rolled back (another instance took over).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.batches.files import ChunkWriter, new_file_id
from gateway.batches.tables import DONE, FAILED, PENDING, RUNNING, BatchLineRow, BatchRow, FileRow
from gateway.metering.ledger import utcnow

PAGE_LINES = 256


class LostFinalization(Exception):
    """Another instance took the batch's finalization over: this attempt is rolled back."""


def final_status(row: BatchRow, unfinished: int, now: datetime) -> str:
    """``cancelled`` if it was cancelled, ``expired`` if its window ended with lines left
    to run, else ``completed``."""
    if row.cancelling_at is not None:
        return "cancelled"
    return "expired" if unfinished and now >= row.expires_at else "completed"


@dataclass
class _Outputs:
    session: AsyncSession
    row: BatchRow
    writers: dict[str, ChunkWriter]

    async def add(self, status: str, result: str | None) -> None:
        if status not in self.writers:
            self.writers[status] = ChunkWriter(self.session, new_file_id())
        await self.writers[status].write((result or "{}").encode() + b"\n")

    async def close(self, status: str, suffix: str, now: datetime) -> str | None:
        writer = self.writers.get(status)
        if writer is None:
            return None
        size = await writer.close()
        self.session.add(FileRow(id=writer.file_id, tenant=self.row.tenant,
                                 filename=f"{self.row.id}_{suffix}.jsonl",
                                 purpose="batch_output", size=size, created_at=now))
        return writer.file_id


async def _write_results(outputs: _Outputs) -> None:
    after = -1
    while True:
        page = (await outputs.session.execute(
            select(BatchLineRow.line, BatchLineRow.status, BatchLineRow.result_json)
            .where(BatchLineRow.batch_id == outputs.row.id, BatchLineRow.line > after,
                   BatchLineRow.status.in_((DONE, FAILED)))
            .order_by(BatchLineRow.line).limit(PAGE_LINES))).all()
        for _, status, result in page:
            await outputs.add(status, result)
        if len(page) < PAGE_LINES:
            return
        after = page[-1].line


class Finalizer:
    def __init__(self, engine: AsyncEngine, owner: str) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._owner = owner

    async def finalize(self, batch_id: str) -> str | None:
        """Write the files and the final status; None if the lease was lost."""
        try:
            async with self._sessions.begin() as session:
                return await self._finalize(session, batch_id)
        except LostFinalization:
            return None

    async def _finalize(self, session: AsyncSession, batch_id: str) -> str:
        row = (await session.scalars(  # PostgreSQL: a takeover waits for this transaction
            select(BatchRow).where(BatchRow.id == batch_id).with_for_update())).first()
        if row is None or row.status != "finalizing" or row.owner != self._owner:
            raise LostFinalization(batch_id)
        now = utcnow()
        unfinished = await session.scalar(select(func.count()).where(
            BatchLineRow.batch_id == batch_id, BatchLineRow.status.in_((PENDING, RUNNING))))
        final = final_status(row, int(unfinished or 0), now)
        outputs = _Outputs(session, row, {})
        await _write_results(outputs)
        stamp = {f"{final}_at": now} if final != "expired" else {}
        done = await session.execute(
            update(BatchRow).where(BatchRow.id == batch_id, BatchRow.status == "finalizing",
                                   BatchRow.owner == self._owner)
            .values(status=final, output_file_id=await outputs.close(DONE, "output", now),
                    error_file_id=await outputs.close(FAILED, "errors", now), owner=None,
                    heartbeat_at=None, **stamp)
            .execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) != 1:
            raise LostFinalization(batch_id)
        return final
