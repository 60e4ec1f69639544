"""Stored responses, scoped to the tenant: another tenant's id is simply not found.

A stored response keeps its body (``GET /v1/responses/{id}``) and the conversation items up
to and including its output, so ``previous_response_id`` continues it in one read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.metering.ledger import utcnow
from gateway.responses.tables import ResponseRow

Json = dict[str, Any]


@dataclass(frozen=True)
class Stored:
    id: str
    tenant: str
    key_id: str | None
    model: str
    body: Json
    items: tuple[Json, ...]
    created_at: datetime

    def __post_init__(self) -> None:
        if not self.id.startswith("resp_") or not self.tenant:
            raise ValueError("a stored response has a resp_ id and a tenant")


class ResponseStore(Protocol):
    async def put(self, stored: Stored) -> None: ...

    async def get(self, response_id: str, tenant: str) -> Stored | None: ...

    async def delete(self, response_id: str, tenant: str) -> bool: ...


class MemoryResponseStore:
    """For a gateway without a database (tests, metering off): kept in this process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Stored] = {}

    async def put(self, stored: Stored) -> None:
        self._rows[(stored.tenant, stored.id)] = stored

    async def get(self, response_id: str, tenant: str) -> Stored | None:
        return self._rows.get((tenant, response_id))

    async def delete(self, response_id: str, tenant: str) -> bool:
        return self._rows.pop((tenant, response_id), None) is not None


class SqlResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def put(self, stored: Stored) -> None:
        async with self._sessions.begin() as session:
            session.add(ResponseRow(
                id=stored.id, tenant=stored.tenant, key_id=stored.key_id, model=stored.model,
                created_at=stored.created_at or utcnow(), body=json.dumps(stored.body),
                items=json.dumps(list(stored.items))))

    async def get(self, response_id: str, tenant: str) -> Stored | None:
        async with self._sessions() as session:
            row = (await session.execute(select(ResponseRow).where(
                ResponseRow.id == response_id, ResponseRow.tenant == tenant))).scalar_one_or_none()
        if row is None:
            return None
        return Stored(row.id, row.tenant, row.key_id, row.model, json.loads(row.body),
                      tuple(json.loads(row.items)), row.created_at)

    async def delete(self, response_id: str, tenant: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(ResponseRow).where(
                ResponseRow.id == response_id, ResponseRow.tenant == tenant))
        return bool(getattr(result, "rowcount", 0))
