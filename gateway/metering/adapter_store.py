"""Registered LoRA adapters in the ledger database (``adapters``, migration 0011): what
``/admin/adapters`` creates, lists and deletes, and every gateway loads at start. Prices
are kept as text of the Decimal given (USD per 1M tokens), so nothing is rounded."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, String, Text, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from gateway.errors import ConflictError
from gateway.metering.ledger import utcnow
from gateway.metering.tables import Base
from gateway.serving.adapters import Adapter


class AdapterRow(Base):
    __tablename__ = "adapters"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    base_model: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    prompt_price: Mapped[str] = mapped_column(String(40))
    completion_price: Mapped[str] = mapped_column(String(40))
    tenants_json: Mapped[str] = mapped_column(Text)  # a JSON list; [] with keys []: everyone
    keys_json: Mapped[str] = mapped_column(Text)
    reasoning_parser: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime())


def _row(adapter: Adapter, created_at: datetime) -> AdapterRow:
    return AdapterRow(name=adapter.name, base_model=adapter.base_model, path=adapter.path,
                      prompt_price=str(adapter.prompt_price),
                      completion_price=str(adapter.completion_price),
                      tenants_json=json.dumps(list(adapter.tenants)),
                      keys_json=json.dumps(list(adapter.keys)),
                      reasoning_parser=adapter.reasoning_parser, created_at=created_at)


def _adapter(row: AdapterRow) -> Adapter:
    created = int(row.created_at.timestamp()) if row.created_at.tzinfo else int(
        (row.created_at - datetime(1970, 1, 1)).total_seconds())
    return Adapter(row.name, row.base_model, row.path, Decimal(row.prompt_price),
                   Decimal(row.completion_price), tuple(json.loads(row.tenants_json)),
                   tuple(json.loads(row.keys_json)), row.reasoning_parser, created)


class AdapterStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, adapter: Adapter) -> Adapter:
        """Store ``adapter`` (its ``created`` set now); a taken name is a ``ConflictError``."""
        row = _row(adapter, utcnow().replace(microsecond=0))
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise ConflictError(f"adapter {adapter.name!r} already exists",
                                param="name") from exc
        return _adapter(row)

    async def list(self) -> list[Adapter]:
        async with self._sessions() as session:
            rows = await session.scalars(select(AdapterRow).order_by(AdapterRow.name))
            return [_adapter(row) for row in rows.all()]

    async def delete(self, name: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(AdapterRow).where(AdapterRow.name == name))
        return bool(result.rowcount)  # type: ignore[attr-defined]
