"""Tenants as objects: their own budget, rate limits, parallel limit and models.

A tenant's allowance applies on top of each of its keys' (a model must be allowed by
both; the stricter limit wins). Keys may name a tenant that has no row: then only the
key's own terms apply. Tenant names are for operators: no tenant sees another's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.auth.allowance import (
    OPEN,
    Allowance,
    Metadata,
    allowance_columns,
    allowance_of,
    check_metadata,
    check_tenant_name,
    end_user_columns,
    end_user_json,
    end_user_quota_of,
)
from gateway.auth.fair_share import UNSET, Share, share_columns, share_of
from gateway.auth.key_records import stamp
from gateway.auth.key_store import OnChange, unchanged
from gateway.errors import ConflictError
from gateway.limits.quota import UNLIMITED, Quota
from gateway.metering.ledger import utcnow
from gateway.metering.tables import TenantRow


@dataclass(frozen=True)
class TenantTerms:
    allowance: Allowance = OPEN
    share: Share = field(default=UNSET, kw_only=True)  # its weight and priority
    metadata: Metadata = field(default_factory=dict)
    end_user: Quota = UNLIMITED  # each end user's own limits (budget, RPM; no TPM)

    def __post_init__(self) -> None:
        check_metadata(self.metadata)
        if self.end_user.tpm is not None:
            raise ValueError("an end user's limits are a budget and an RPM")


@dataclass(frozen=True)
class TenantRecord:
    name: str
    created_at: datetime
    updated_at: datetime
    terms: TenantTerms = TenantTerms()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": stamp(self.created_at),
                "updated_at": stamp(self.updated_at), **self.terms.allowance.as_json(),
                **self.terms.share.as_json(),
                "metadata": dict(self.terms.metadata), **end_user_json(self.terms.end_user)}


def _terms(row: TenantRow) -> TenantTerms:
    return dataclasses.replace(_limits(row), share=share_of(row))


def _limits(row: TenantRow) -> TenantTerms:
    metadata = {} if row.metadata_json is None else json.loads(row.metadata_json)
    return TenantTerms(allowance_of(row), metadata, end_user_quota_of(row))


def _record(row: TenantRow) -> TenantRecord:
    return TenantRecord(row.name, row.created_at, row.updated_at, _terms(row))


def _columns(terms: TenantTerms) -> dict[str, Any]:
    return {**_limit_columns(terms), **share_columns(terms.share)}


def _limit_columns(terms: TenantTerms) -> dict[str, Any]:
    metadata = json.dumps(dict(terms.metadata)) if terms.metadata else None
    return {**allowance_columns(terms.allowance), "metadata_json": metadata,
            **end_user_columns(terms.end_user)}


class TenantStore:
    def __init__(self, engine: AsyncEngine, on_change: OnChange = unchanged) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._on_change = on_change  # a tenant's terms are part of its keys' principals

    async def create(self, name: str, terms: TenantTerms = TenantTerms()) -> TenantRecord:
        """A new tenant; a reserved or malformed name is a ``ValueError``, a taken one a
        ``ConflictError``."""
        check_tenant_name(name)
        now = utcnow()
        row = TenantRow(name=name, created_at=now, updated_at=now, revision=0,
                        **_columns(terms))
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise ConflictError(f"tenant {name!r} already exists", param="name") from exc
        await self._on_change()  # its keys had no tenant terms until now
        return _record(row)

    async def list(self) -> list[TenantRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(TenantRow).order_by(TenantRow.name))
            return [_record(row) for row in rows.all()]

    async def get(self, name: str) -> TenantRecord | None:
        async with self._sessions() as session:
            row = await session.get(TenantRow, name)
        return None if row is None else _record(row)

    async def update(self, name: str, change: Callable[[TenantTerms], TenantTerms]
                     ) -> TenantRecord | None:
        """Apply ``change`` in one transaction (None: no such tenant); counts a revision."""
        async with self._sessions.begin() as session:
            row = await session.get(TenantRow, name, with_for_update=True)
            if row is None:
                return None
            for column, value in _columns(change(_terms(row))).items():
                setattr(row, column, value)
            row.revision += 1
            row.updated_at = utcnow()
        await self._on_change()
        return _record(row)
