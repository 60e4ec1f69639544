"""``/admin/tenants``: tenants with their own budget, rate limits, parallel limit and
models, enforced on top of each of their keys' (the stricter wins). Admin only: a
tenant's name, terms and spend are never shown to another tenant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gateway.auth.tenant_store import TenantRecord
from gateway.errors import NotFoundError
from gateway.http.admin_bodies import (
    TenantCreateBody,
    TenantPatchBody,
    tenant_patch,
    tenant_terms,
)
from gateway.http.admin_routes import require_admin
from gateway.http.key_routes import checked, metering_of, valid
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import usd_text
from gateway.metering.service import Metering
from gateway.metering.spend import PeriodSpend, period_spend
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/admin/tenants")


def with_spend(record: TenantRecord, spent: PeriodSpend) -> dict[str, Any]:
    """The tenant and what all its keys spent in its current budget period."""
    period = record.terms.allowance.quota.budget_period
    return {**record.as_json(), "period_spend_usd": usd_text(spent.of(record.name, period))}


@router.post("", status_code=201)
async def create_tenant(
    body: TenantCreateBody,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """A tenant; ``admin`` and ``anonymous`` are reserved, a taken name is a 409."""
    record = await checked(metering.tenants.create(body.name,
                                                   valid(lambda: tenant_terms(body))))
    return record.as_json()


@router.get("")
async def list_tenants(
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    records = await metering.tenants.list()
    spent = await period_spend(metering.database, "tenant", utcnow())
    return {"object": "list", "data": [with_spend(r, spent) for r in records]}


@router.get("/{name}")
async def get_tenant(
    name: str,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    record = await metering.tenants.get(name)
    if record is None:
        raise NotFoundError(f"no tenant {name!r}")
    return with_spend(record, await period_spend(metering.database, "tenant", utcnow()))


@router.patch("/{name}")
async def update_tenant(
    name: str,
    body: TenantPatchBody,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Change the fields sent (``null`` clears one); every key of the tenant sees it at once."""
    record = await checked(metering.tenants.update(name, tenant_patch(body)))
    if record is None:
        raise NotFoundError(f"no tenant {name!r}")
    return with_spend(record, await period_spend(metering.database, "tenant", utcnow()))
