"""Uploaded files (purpose ``batch``) and the output files batches write, per tenant.

A tenant sees only its own files: another tenant's id is simply not found, for reading
and deleting alike. Content lives in ``file_chunks`` rows of at most ``CHUNK_BYTES``: an
upload or a batch's output is written piece by piece inside one transaction (the file
appears whole or not at all) and read back one chunk at a time, so no file is ever held
whole in memory. A tenant's stored bytes are bounded (``batches.max_tenant_file_bytes``:
an upload past it is a 413 ``file_quota_exceeded``); a file may expire
(``expires_after``), and is then gone: not found, and deleted by the batch worker.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, insert, select, text, true
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.batches.tables import FileChunkRow, FileRow
from gateway.errors import RequestTooLargeError
from gateway.metering.ledger import utcnow

PURPOSES = ("batch", "batch_output")
CHUNK_BYTES = 1 << 20
_QUOTA_LOCK = 0x66696C65  # "file": with the tenant's hash, one PostgreSQL advisory lock


def unix(moment: datetime | None) -> int | None:
    """A naive UTC timestamp as Unix seconds (the API's format)."""
    return None if moment is None else int(moment.replace(tzinfo=UTC).timestamp())


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class FileInfo:
    id: str
    tenant: str
    filename: str
    purpose: str
    size: int
    created_at: datetime
    expires_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "object": "file", "bytes": self.size,
                "created_at": unix(self.created_at), "filename": self.filename,
                "purpose": self.purpose, "status": "processed",
                "expires_at": unix(self.expires_at), "status_details": None}


def _info(row: FileRow) -> FileInfo:
    return FileInfo(row.id, row.tenant, row.filename, row.purpose, row.size, row.created_at,
                    row.expires_at)


def _visible(tenant: str | None, now: datetime) -> ColumnElement[bool]:
    alive = FileRow.expires_at.is_(None) | (FileRow.expires_at > now)
    return alive & (FileRow.tenant == tenant if tenant is not None else true())


class ChunkWriter:
    """Writes one file's content into ``session`` in chunks, as the pieces arrive."""

    def __init__(self, session: AsyncSession, file_id: str, limit: int | None = None) -> None:
        self._session, self.file_id, self._limit = session, file_id, limit
        self._buffer = bytearray()
        self._seq = 0
        self.size = 0

    async def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self._limit is not None and self.size > self._limit:
            raise RequestTooLargeError(f"files are limited to {self._limit} bytes")
        self._buffer += piece
        while len(self._buffer) >= CHUNK_BYTES:
            await self._flush(CHUNK_BYTES)

    async def close(self) -> int:
        if self._buffer:
            await self._flush(len(self._buffer))
        return self.size

    async def _flush(self, count: int) -> None:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        await self._session.execute(
            insert(FileChunkRow).values(file_id=self.file_id, seq=self._seq, data=data))
        self._seq += 1


async def _usage(session: AsyncSession, tenant: str) -> int:
    statement = select(func.coalesce(func.sum(FileRow.size), 0)).where(
        _visible(tenant, utcnow()))
    return int(await session.scalar(statement) or 0)


async def _lock_quota(session: AsyncSession, tenant: str) -> None:
    """Uploads of one tenant check its quota one at a time (SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
                              {"ns": _QUOTA_LOCK, "tenant": tenant})


async def _check_quota(session: AsyncSession, tenant: str, adding: int,
                       quota: int | None) -> None:
    if quota is None:
        return
    used = await _usage(session, tenant)
    if used + adding > quota:
        raise RequestTooLargeError(
            f"this upload would take the tenant's stored files to {used + adding} bytes, over "
            f"its quota of {quota}: delete files first", code="file_quota_exceeded")


class FileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def upload(self, tenant: str, filename: str, purpose: str,
                     pieces: AsyncIterable[bytes], *, limit: int | None = None,
                     declared: int | None = None,
                     expires_after_s: int | Callable[[], int | None] | None = None,
                     quota: int | None = None) -> FileInfo:
        """Store an upload, its size checked against ``limit`` and the tenant's ``quota``
        before anything is read (when ``declared``) and again as it is written. A callable
        ``expires_after_s`` is asked once the pieces are read (a form field after the file)."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}")
        if declared is not None:
            await self.check_quota(tenant, declared, quota)
        row = FileRow(id=new_file_id(), tenant=tenant, filename=filename[:256],
                      purpose=purpose, size=0, created_at=utcnow(), expires_at=None)
        async with self._sessions.begin() as session:
            writer = ChunkWriter(session, row.id, limit)
            async for piece in pieces:
                await writer.write(piece)
            row.size = await writer.close()
            seconds = expires_after_s() if callable(expires_after_s) else expires_after_s
            if seconds is not None:
                row.expires_at = row.created_at + timedelta(seconds=seconds)
            if quota is not None:
                await _lock_quota(session, tenant)
                await _check_quota(session, tenant, row.size, quota)
            session.add(row)
        return _info(row)

    async def check_quota(self, tenant: str, adding: int, quota: int | None) -> None:
        """A 413 ``file_quota_exceeded`` when ``adding`` bytes would pass ``quota``."""
        async with self._sessions() as session:
            await _check_quota(session, tenant, adding, quota)

    async def usage(self, tenant: str) -> int:
        """Bytes of the tenant's stored files (uploads and batch outputs, not expired)."""
        async with self._sessions() as session:
            return await _usage(session, tenant)

    async def get(self, file_id: str, tenant: str | None) -> FileInfo | None:
        """``tenant`` None: any tenant's (the admin key)."""
        statement = select(FileRow).where(FileRow.id == file_id, _visible(tenant, utcnow()))
        async with self._sessions() as session:
            row = (await session.scalars(statement)).first()
        return None if row is None else _info(row)

    async def chunks(self, file_id: str) -> AsyncIterator[bytes]:
        """The content, one chunk per query (no session is held between chunks)."""
        seq = 0
        while True:
            statement = select(FileChunkRow.data).where(FileChunkRow.file_id == file_id,
                                                        FileChunkRow.seq == seq)
            async with self._sessions() as session:
                data = (await session.scalars(statement)).first()
            if data is None:
                return
            yield data
            seq += 1

    async def list(self, tenant: str | None, purpose: str | None, limit: int) -> list[FileInfo]:
        statement = (select(FileRow).where(_visible(tenant, utcnow()))
                     .order_by(FileRow.created_at.desc(), FileRow.id).limit(limit))
        if purpose is not None:
            statement = statement.where(FileRow.purpose == purpose)
        async with self._sessions() as session:
            return [_info(row) for row in (await session.scalars(statement)).all()]

    async def delete(self, file_id: str, tenant: str | None) -> bool:
        statement = delete(FileRow).where(FileRow.id == file_id, _visible(tenant, utcnow()))
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
            gone = bool(getattr(result, "rowcount", 0) == 1)
            if gone:
                await session.execute(delete(FileChunkRow).where(FileChunkRow.file_id == file_id))
        return gone

    async def delete_expired(self, now: datetime, limit: int = 100) -> int:
        """Delete up to ``limit`` files whose expiry has passed, with their content."""
        due = (select(FileRow.id).where(FileRow.expires_at <= now)
               .order_by(FileRow.expires_at).limit(limit))
        async with self._sessions.begin() as session:
            ids = list((await session.scalars(due)).all())
            if ids:
                await session.execute(delete(FileChunkRow).where(FileChunkRow.file_id.in_(ids)))
                await session.execute(delete(FileRow).where(FileRow.id.in_(ids)))
        return len(ids)
