"""Stored responses, scoped to the tenant: another tenant's id is simply not found.

A stored response keeps its body (``GET /v1/responses/{id}``) and the items it added to the
conversation (its input items and output), linked to the response it continues
(``previous_id``): a conversation is stored once, not once per turn. Each row is sized (a
tenant's quota) and expires: an expired row is not found at once and purged later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.responses.tables import ResponseRow

Json = dict[str, Any]


@dataclass(frozen=True)
class Stored:
    id: str
    tenant: str
    key_id: str | None
    model: str
    body: Json
    items: tuple[Json, ...]  # what this response added (older rows: the whole conversation)
    created_at: datetime
    previous_id: str | None = None
    expires_at: datetime | None = None
    size: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.id.startswith("resp_") or not self.tenant:
            raise ValueError("a stored response has a resp_ id and a tenant")
        if self.size == 0:
            object.__setattr__(self, "size", len(_text(self.body)) + len(_text(self.items)))

    def alive(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


def _text(value: object) -> bytes:
    return json.dumps(value if not isinstance(value, tuple) else list(value)).encode()


@dataclass(frozen=True)
class TenantStorage:
    tenant: str
    responses: int
    bytes: int

    def as_json(self) -> dict[str, object]:
        return {"tenant": self.tenant, "responses": self.responses,
                "response_bytes": self.bytes}


class ResponseStore(Protocol):
    async def put(self, stored: Stored, keep_alive: Sequence[str] = ()) -> None:
        """Store ``stored``; the responses it continues (``keep_alive``) live as long."""

    async def get(self, response_id: str, tenant: str, now: datetime) -> Stored | None: ...

    async def delete(self, response_id: str, tenant: str, now: datetime) -> bool: ...

    async def usage(self, tenant: str | None, now: datetime) -> list[TenantStorage]:
        """Live responses and their bytes per tenant (``tenant`` None: every tenant)."""

    async def delete_expired(self, now: datetime, limit: int = 500) -> int: ...


class MemoryResponseStore:
    """For a gateway without a database (tests, metering off): kept in this process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Stored] = {}

    async def put(self, stored: Stored, keep_alive: Sequence[str] = ()) -> None:
        self._rows[(stored.tenant, stored.id)] = stored
        for response_id in keep_alive:
            old = self._rows.get((stored.tenant, response_id))
            if old is not None and old.expires_at is not None and (
                    stored.expires_at is None or old.expires_at < stored.expires_at):
                self._rows[(old.tenant, old.id)] = _with_expiry(old, stored.expires_at)

    async def get(self, response_id: str, tenant: str, now: datetime) -> Stored | None:
        stored = self._rows.get((tenant, response_id))
        return stored if stored is not None and stored.alive(now) else None

    async def delete(self, response_id: str, tenant: str, now: datetime) -> bool:
        if await self.get(response_id, tenant, now) is None:
            return False
        return self._rows.pop((tenant, response_id), None) is not None

    async def usage(self, tenant: str | None, now: datetime) -> list[TenantStorage]:
        totals: dict[str, tuple[int, int]] = {}
        for stored in self._rows.values():
            if stored.alive(now) and tenant in (None, stored.tenant):
                count, size = totals.get(stored.tenant, (0, 0))
                totals[stored.tenant] = (count + 1, size + stored.size)
        return [TenantStorage(name, *totals[name]) for name in sorted(totals)]

    async def delete_expired(self, now: datetime, limit: int = 500) -> int:
        due = [key for key, stored in self._rows.items() if not stored.alive(now)][:limit]
        for key in due:
            del self._rows[key]
        return len(due)


def _with_expiry(stored: Stored, expires_at: datetime | None) -> Stored:
    return Stored(stored.id, stored.tenant, stored.key_id, stored.model, stored.body,
                  stored.items, stored.created_at, stored.previous_id, expires_at, stored.size)


def _alive(now: datetime) -> ColumnElement[bool]:
    return ResponseRow.expires_at.is_(None) | (ResponseRow.expires_at > now)


def _stored(row: ResponseRow) -> Stored:
    return Stored(row.id, row.tenant, row.key_id, row.model, json.loads(row.body),
                  tuple(json.loads(row.items)), row.created_at, row.previous_id,
                  row.expires_at, row.size)


class SqlResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def put(self, stored: Stored, keep_alive: Sequence[str] = ()) -> None:
        async with self._sessions.begin() as session:
            session.add(ResponseRow(
                id=stored.id, tenant=stored.tenant, key_id=stored.key_id, model=stored.model,
                created_at=stored.created_at, body=_text(stored.body).decode(),
                items=_text(stored.items).decode(), previous_id=stored.previous_id,
                size=stored.size, expires_at=stored.expires_at))
            if keep_alive and stored.expires_at is not None:
                await session.execute(update(ResponseRow).where(
                    ResponseRow.tenant == stored.tenant, ResponseRow.id.in_(list(keep_alive)),
                    ResponseRow.expires_at < stored.expires_at,
                ).values(expires_at=stored.expires_at))

    async def get(self, response_id: str, tenant: str, now: datetime) -> Stored | None:
        async with self._sessions() as session:
            row = (await session.execute(select(ResponseRow).where(
                ResponseRow.id == response_id, ResponseRow.tenant == tenant,
                _alive(now)))).scalar_one_or_none()
        return None if row is None else _stored(row)

    async def delete(self, response_id: str, tenant: str, now: datetime) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(ResponseRow).where(
                ResponseRow.id == response_id, ResponseRow.tenant == tenant, _alive(now)))
        return bool(getattr(result, "rowcount", 0))

    async def usage(self, tenant: str | None, now: datetime) -> list[TenantStorage]:
        statement = (select(ResponseRow.tenant, func.count(ResponseRow.id),
                            func.coalesce(func.sum(ResponseRow.size), 0))
                     .where(_alive(now)).group_by(ResponseRow.tenant)
                     .order_by(ResponseRow.tenant))
        if tenant is not None:
            statement = statement.where(ResponseRow.tenant == tenant)
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        return [TenantStorage(str(name), int(count), int(size)) for name, count, size in rows]

    async def delete_expired(self, now: datetime, limit: int = 500) -> int:
        due = (select(ResponseRow.id).where(ResponseRow.expires_at <= now)
               .order_by(ResponseRow.expires_at).limit(limit))
        async with self._sessions.begin() as session:
            ids = list((await session.scalars(due)).all())
            if ids:
                await session.execute(delete(ResponseRow).where(ResponseRow.id.in_(ids)))
        return len(ids)
