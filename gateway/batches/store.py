"""Batches in the database: the state a restart, or another instance, resumes from.

A batch is created in one transaction with its lines, which arrive in groups as the
input file is parsed (``create``): a file with any mistake leaves a ``failed`` batch and
no line. Running lines are leased to the instance running them (``leases.py``); the
output files are written when the batch is finalized (``output.py``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.batches.files import unix
from gateway.batches.jsonl import InputLine
from gateway.batches.tables import DONE, FAILED, PENDING, BatchLineRow, BatchRow
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


class InputRejected(Exception):
    """The input file has mistakes: the batch fails, naming them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} mistakes in the input file")
        self.errors = errors


@dataclass(frozen=True)
class NewBatch:
    tenant: str
    key_id: str | None
    endpoint: str
    input_file_id: str
    metadata: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.tenant or not self.endpoint or not self.input_file_id:
            raise ValueError("a batch has a tenant, an endpoint and an input file")

    def row(self, now: datetime, errors: list[dict[str, Any]] | None) -> BatchRow:
        return BatchRow(
            id=f"batch_{secrets.token_hex(12)}", tenant=self.tenant, key_id=self.key_id,
            endpoint=self.endpoint, input_file_id=self.input_file_id,
            completion_window="24h", status="failed" if errors else "in_progress",
            metadata_json=json.dumps(self.metadata) if self.metadata else None,
            errors_json=json.dumps(errors) if errors else None, created_at=now,
            expires_at=now + timedelta(hours=24), in_progress_at=None if errors else now,
            failed_at=now if errors else None)


def _line(batch_id: str, number: int, item: InputLine) -> dict[str, Any]:
    return {"batch_id": batch_id, "line": number, "custom_id": item.custom_id,
            "body_json": json.dumps(item.body), "status": PENDING, "attempts": 0,
            "failed_attempts": 0}


def _visible(tenant: str | None) -> ColumnElement[bool]:
    return BatchRow.tenant == tenant if tenant is not None else true()


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, spec: NewBatch,
                     groups: AsyncIterator[list[InputLine]]) -> BatchView:
        """The batch and its lines, in one transaction, the lines stored group by group as
        ``groups`` yields them; ``groups`` raising ``InputRejected`` makes it ``failed``."""
        now = utcnow()
        row = spec.row(now, None)
        count = 0
        try:
            async with self._sessions.begin() as session:
                session.add(row)
                await session.flush()
                async for group in groups:
                    if group:
                        await session.execute(insert(BatchLineRow), [
                            _line(row.id, number, item)
                            for number, item in enumerate(group, start=count)])
                        count += len(group)
        except InputRejected as rejected:
            row = spec.row(now, rejected.errors)
            async with self._sessions.begin() as session:
                session.add(row)
            return BatchView(row, {})
        return BatchView(row, {PENDING: count})

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


def is_expired(row: BatchRow, now: datetime) -> bool:
    return row.status in ACTIVE and now >= row.expires_at
