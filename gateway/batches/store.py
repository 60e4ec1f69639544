"""Batches and their lines in the database: the state a restart resumes from.

A worker claims a pending line with a conditional update (only one claim can win, across
gateway replicas), runs it, and finishes it with another (only its owner can). Lines a
crashed instance left running go back to pending at its restart; the ledger row of that
attempt is closed by metering's own recovery, and the retry gets a new request id, so
a line is billed for the one attempt that finished.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.batches.files import unix
from gateway.batches.jsonl import InputLine
from gateway.batches.tables import DONE, FAILED, PENDING, RUNNING, BatchLineRow, BatchRow
from gateway.metering.ledger import utcnow

ACTIVE = ("in_progress", "cancelling")
TERMINAL = ("failed", "completed", "expired", "cancelled")
_STAMPS = ("expires_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at",
           "cancelling_at", "cancelled_at")


@dataclass(frozen=True)
class BatchView:
    row: BatchRow
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        row = self.row
        total = sum(self.counts.values())
        errors = json.loads(row.errors_json) if row.errors_json else None
        return {
            "id": row.id, "object": "batch", "endpoint": row.endpoint,
            "input_file_id": row.input_file_id, "completion_window": row.completion_window,
            "status": row.status, "output_file_id": row.output_file_id,
            "error_file_id": row.error_file_id, "created_at": unix(row.created_at),
            **{name: unix(getattr(row, name)) for name in _STAMPS},
            # no column of its own: an expired batch is stamped when it starts finalizing
            "expired_at": unix(row.finalizing_at) if row.status == "expired" else None,
            "errors": None if errors is None else {"object": "list", "data": errors},
            "request_counts": {"total": total, "completed": self.counts.get(DONE, 0),
                               "failed": self.counts.get(FAILED, 0)},
            "metadata": json.loads(row.metadata_json) if row.metadata_json else None,
        }


@dataclass(frozen=True)
class ClaimedLine:
    batch_id: str
    line: int
    custom_id: str
    body: dict[str, Any]
    attempt: int

    @property
    def request_id(self) -> str:
        return f"{self.batch_id}-{self.line}-{self.attempt}"  # one ledger row per attempt


def _visible(tenant: str | None) -> ColumnElement[bool]:
    return BatchRow.tenant == tenant if tenant is not None else true()


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, tenant: str, key_id: str | None, endpoint: str, input_file_id: str,
                     lines: list[InputLine], errors: list[dict[str, Any]],
                     metadata: dict[str, str] | None) -> BatchView:
        now = utcnow()
        row = BatchRow(
            id=f"batch_{secrets.token_hex(12)}", tenant=tenant, key_id=key_id,
            endpoint=endpoint, input_file_id=input_file_id, completion_window="24h",
            status="failed" if errors else "in_progress",
            metadata_json=json.dumps(metadata) if metadata else None,
            errors_json=json.dumps(errors) if errors else None, created_at=now,
            expires_at=now + timedelta(hours=24), in_progress_at=None if errors else now,
            failed_at=now if errors else None)
        async with self._sessions.begin() as session:
            session.add(row)
            if not errors:
                session.add_all(BatchLineRow(batch_id=row.id, line=i, custom_id=item.custom_id,
                                             body_json=json.dumps(item.body), status=PENDING,
                                             attempts=0) for i, item in enumerate(lines))
        return BatchView(row, {PENDING: 0 if errors else len(lines)})

    async def counts(self, batch_id: str) -> dict[str, int]:
        statement = (select(BatchLineRow.status, func.count()).where(
            BatchLineRow.batch_id == batch_id).group_by(BatchLineRow.status))
        async with self._sessions() as session:
            return {status: int(n) for status, n in (await session.execute(statement)).all()}

    async def get(self, batch_id: str, tenant: str | None) -> BatchView | None:
        statement = select(BatchRow).where(BatchRow.id == batch_id, _visible(tenant))
        async with self._sessions() as session:
            row = (await session.scalars(statement)).first()
        return None if row is None else BatchView(row, await self.counts(row.id))

    async def page(self, tenant: str | None, limit: int, after: str | None) -> list[BatchView]:
        statement = select(BatchRow).where(_visible(tenant))
        if after is not None:
            anchor = await self.get(after, tenant)
            if anchor is not None:
                statement = statement.where(BatchRow.created_at <= anchor.row.created_at,
                                            BatchRow.id != after)
        statement = statement.order_by(BatchRow.created_at.desc(), BatchRow.id).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(statement)).all()
        return [BatchView(row, await self.counts(row.id)) for row in rows]

    async def set_status(self, batch_id: str, status: str, only_from: tuple[str, ...],
                         **values: Any) -> bool:
        """Move to ``status`` (stamping ``<status>_at``) if currently one of ``only_from``."""
        stamp = {f"{status}_at": utcnow()} if f"{status}_at" in _STAMPS else {}
        statement = (update(BatchRow).where(BatchRow.id == batch_id,
                                            BatchRow.status.in_(only_from))
                     .values(status=status, **stamp, **values))
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        return bool(getattr(result, "rowcount", 0) == 1)

    async def active(self) -> list[BatchRow]:
        statement = select(BatchRow).where(BatchRow.status.in_((*ACTIVE, "finalizing")))
        async with self._sessions() as session:
            return list((await session.scalars(statement.order_by(BatchRow.created_at))).all())

    async def claim(self, batch_id: str, owner: str, limit: int) -> list[ClaimedLine]:
        pending = (select(BatchLineRow).where(BatchLineRow.batch_id == batch_id,
                                              BatchLineRow.status == PENDING)
                   .order_by(BatchLineRow.line).limit(limit))
        claimed = []
        async with self._sessions() as session:
            candidates = (await session.scalars(pending)).all()
        for row in candidates:
            grab = (update(BatchLineRow)
                    .where(BatchLineRow.batch_id == batch_id, BatchLineRow.line == row.line,
                           BatchLineRow.status == PENDING)
                    .values(status=RUNNING, owner=owner, attempts=row.attempts + 1))
            async with self._sessions.begin() as session:
                won = getattr(await session.execute(grab), "rowcount", 0) == 1
            if won:
                claimed.append(ClaimedLine(batch_id, row.line, row.custom_id,
                                           json.loads(row.body_json), row.attempts + 1))
        return claimed

    async def finish(self, line: ClaimedLine, owner: str, status: str,
                     result: dict[str, Any]) -> bool:
        assert status in (DONE, FAILED), status
        statement = (update(BatchLineRow)
                     .where(BatchLineRow.batch_id == line.batch_id, BatchLineRow.line == line.line,
                            BatchLineRow.status == RUNNING, BatchLineRow.owner == owner)
                     .values(status=status, result_json=json.dumps(result)))
        async with self._sessions.begin() as session:
            return bool(getattr(await session.execute(statement), "rowcount", 0) == 1)

    async def release(self, owner: str, batch_id: str | None = None) -> int:
        """Lines ``owner`` left running (a crash, a cancel) go back to pending."""
        statement = update(BatchLineRow).where(BatchLineRow.status == RUNNING,
                                               BatchLineRow.owner == owner)
        if batch_id is not None:
            statement = statement.where(BatchLineRow.batch_id == batch_id)
        async with self._sessions.begin() as session:
            result = await session.execute(statement.values(status=PENDING, owner=None))
        return int(getattr(result, "rowcount", 0))

    async def results(self, batch_id: str) -> list[tuple[str, str]]:
        """(status, result line) of every finished line, in input order."""
        statement = (select(BatchLineRow.status, BatchLineRow.result_json)
                     .where(BatchLineRow.batch_id == batch_id,
                            BatchLineRow.status.in_((DONE, FAILED)))
                     .order_by(BatchLineRow.line))
        async with self._sessions() as session:
            return [(s, r or "{}") for s, r in (await session.execute(statement)).all()]


def is_expired(row: BatchRow, now: datetime) -> bool:
    return row.status in ACTIVE and now >= row.expires_at
