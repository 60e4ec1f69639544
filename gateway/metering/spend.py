"""Spend totals from the ledger: filters, grouping, and a CSV rendering.

Grouping by ``tag`` counts a request once under each of its tags (untagged ones under
``null``), so those groups' totals add up to more than the spend when requests carry
several tags; ``user`` is the requests' end user (``null``: none named)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.metering.pricing import from_pico, usd_text
from gateway.metering.tables import LedgerRow, LedgerTagRow

GROUPS = ("tenant", "key", "model", "status", "day", "user", "tag", "adapter")
TOTALS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")


@dataclass(frozen=True)
class SpendQuery:
    tenant: str | None = None
    key_id: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    group_by: tuple[str, ...] = ()
    user: str | None = None  # one end user's
    tag: str | None = None  # requests carrying this tag

    def __post_init__(self) -> None:
        unknown = [g for g in self.group_by if g not in GROUPS]
        if unknown:
            raise ValueError(f"cannot group by {', '.join(unknown)}; use {', '.join(GROUPS)}")


@dataclass(frozen=True)
class SpendLine:
    group: dict[str, str | None]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: Decimal

    def as_json(self) -> dict[str, Any]:
        return {**self.group, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cached_tokens": self.cached_tokens, "cost_usd": usd_text(self.cost_usd)}


def _group_column(name: str) -> ColumnElement[Any]:
    if name == "day":
        return func.date(LedgerRow.created_at).label(name)
    columns = {"tenant": LedgerRow.tenant, "key": LedgerRow.key_id, "model": LedgerRow.model,
               "status": LedgerRow.status, "user": LedgerRow.end_user,
               "adapter": LedgerRow.adapter, "tag": LedgerTagRow.tag}
    return columns[name].label(name)


def _filters(query: SpendQuery) -> list[ColumnElement[bool]]:
    # Settled rows only: an open reservation is not spend yet.
    conditions: list[ColumnElement[bool]] = [LedgerRow.settled_at.is_not(None)]
    if query.tenant is not None:
        conditions.append(LedgerRow.tenant == query.tenant)
    if query.key_id is not None:
        conditions.append(LedgerRow.key_id == query.key_id)
    if query.model is not None:
        conditions.append(LedgerRow.model == query.model)
    if query.since is not None:
        conditions.append(LedgerRow.created_at >= query.since)
    if query.until is not None:
        conditions.append(LedgerRow.created_at < query.until)
    if query.user is not None:
        conditions.append(LedgerRow.end_user == query.user)
    if query.tag is not None:
        tagged = select(LedgerTagRow.request_id).where(LedgerTagRow.tag == query.tag)
        conditions.append(LedgerRow.id.in_(tagged))
    return conditions


async def spend(engine: AsyncEngine, query: SpendQuery) -> list[SpendLine]:
    """One line per group (one line in all without ``group_by``)."""
    groups = [_group_column(name) for name in query.group_by]
    sums = [
        func.count(LedgerRow.id), func.coalesce(func.sum(LedgerRow.prompt_tokens), 0),
        func.coalesce(func.sum(LedgerRow.completion_tokens), 0),
        func.coalesce(func.sum(LedgerRow.cached_tokens), 0),
        func.coalesce(func.sum(LedgerRow.cost_pico), 0),
    ]
    statement = select(*groups, *sums).where(*_filters(query))
    if "tag" in query.group_by:  # one line per (row, tag); untagged rows once, tag null
        statement = statement.select_from(LedgerRow).outerjoin(
            LedgerTagRow, LedgerTagRow.request_id == LedgerRow.id)
    if groups:
        statement = statement.group_by(*groups).order_by(*groups)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
    lines = []
    for row in rows:
        keys = row[: len(groups)]
        requests, prompt, completion, cached, pico = (int(v) for v in row[len(groups):])
        group = {name: None if k is None else str(k)
                 for name, k in zip(query.group_by, keys, strict=True)}
        lines.append(SpendLine(group, requests, prompt, completion, cached, from_pico(pico)))
    return lines


def spend_csv(query: SpendQuery, lines: list[SpendLine]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*query.group_by, *TOTALS])
    for line in lines:
        record = line.as_json()
        writer.writerow([record[name] for name in (*query.group_by, *TOTALS)])
    return out.getvalue()


@dataclass(frozen=True)
class PeriodSpend:
    """Settled spend per key (or tenant) in the current UTC day and month."""

    day: dict[str, Decimal]
    month: dict[str, Decimal]

    def of(self, name: str, period: str) -> Decimal:
        return (self.day if period == "day" else self.month).get(name, Decimal(0))


async def period_spend(engine: AsyncEngine, group: Literal["key", "tenant"],
                       now: datetime) -> PeriodSpend:
    """What each key (or tenant) has spent this day and this month (settled rows)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    found = []
    for since in (day, month):
        lines = await spend(engine, SpendQuery(since=since, group_by=(group,)))
        found.append({line.group[group] or "": line.cost_usd for line in lines})
    return PeriodSpend(*found)


LEDGER_COLUMNS = ("id", "created_at", "tenant", "key_id", "model", "status", "prompt_tokens",
                  "cached_tokens", "completion_tokens", "cost_usd", "batch_id", "user",
                  "adapter")


async def recent_rows(engine: AsyncEngine, limit: int, tenant: str | None = None,
                      key_id: str | None = None) -> list[dict[str, Any]]:
    """The newest ledger rows (open ones included, status ``reserved``), newest first."""
    statement = select(LedgerRow).order_by(LedgerRow.created_at.desc(), LedgerRow.id.desc())
    if tenant is not None:
        statement = statement.where(LedgerRow.tenant == tenant)
    if key_id is not None:
        statement = statement.where(LedgerRow.key_id == key_id)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement.limit(limit))).all()
    return [{"id": r.id, "created_at": r.created_at.isoformat() + "Z", "tenant": r.tenant,
             "key_id": r.key_id, "model": r.model, "status": r.status,
             "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens,
             "completion_tokens": r.completion_tokens,
             "cost_usd": usd_text(from_pico(r.cost_pico)), "batch_id": r.batch_id,
             "user": r.end_user, "adapter": r.adapter}
            for r in rows]
