"""Uploaded files (purpose ``batch``) and the output files batches write, per tenant.

A tenant sees only its own files: another tenant's id is simply not found.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, select, true
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.batches.tables import FileRow
from gateway.metering.ledger import utcnow

PURPOSES = ("batch", "batch_output")


def unix(moment: datetime | None) -> int | None:
    """A naive UTC timestamp as Unix seconds (the API's format)."""
    return None if moment is None else int(moment.replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class FileInfo:
    id: str
    tenant: str
    filename: str
    purpose: str
    size: int
    created_at: datetime

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "object": "file", "bytes": self.size,
                "created_at": unix(self.created_at), "filename": self.filename,
                "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


def _info(row: FileRow) -> FileInfo:
    return FileInfo(row.id, row.tenant, row.filename, row.purpose, row.size, row.created_at)


def _visible(tenant: str | None) -> ColumnElement[bool]:
    return FileRow.tenant == tenant if tenant is not None else true()


class FileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, tenant: str, filename: str, purpose: str, content: bytes) -> FileInfo:
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}")
        row = FileRow(id=f"file-{secrets.token_hex(12)}", tenant=tenant, filename=filename[:256],
                      purpose=purpose, size=len(content), created_at=utcnow(), content=content)
        async with self._sessions.begin() as session:
            session.add(row)
        return _info(row)

    async def get(self, file_id: str, tenant: str | None) -> FileInfo | None:
        """``tenant`` None: any tenant's (the admin key)."""
        statement = select(FileRow).where(FileRow.id == file_id, _visible(tenant))
        async with self._sessions() as session:
            row = (await session.scalars(statement)).first()
        return None if row is None else _info(row)

    async def content(self, file_id: str, tenant: str | None) -> bytes | None:
        statement = select(FileRow.content).where(FileRow.id == file_id, _visible(tenant))
        async with self._sessions() as session:
            return (await session.scalars(statement)).first()

    async def list(self, tenant: str | None, purpose: str | None, limit: int) -> list[FileInfo]:
        statement = (select(FileRow).where(_visible(tenant))
                     .order_by(FileRow.created_at.desc(), FileRow.id).limit(limit))
        if purpose is not None:
            statement = statement.where(FileRow.purpose == purpose)
        async with self._sessions() as session:
            return [_info(row) for row in (await session.scalars(statement)).all()]

    async def delete(self, file_id: str, tenant: str | None) -> bool:
        statement = delete(FileRow).where(FileRow.id == file_id, _visible(tenant))
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        return bool(getattr(result, "rowcount", 0) == 1)
