"""What tenants keep stored, beside their spend: ``/admin/storage`` for operators (every
tenant, or one), ``/v1/storage`` for a tenant's own. Stored responses (live ones: expired
rows count for nothing, purged or not), bounded by ``responses.max_tenant_bytes``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gateway.errors import PermissionDeniedError
from gateway.http.admin_routes import require_admin
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.responses.store import TenantStorage
from gateway.serving.accounting import Principal

router = APIRouter()


def _body(state: GatewayState, lines: list[TenantStorage]) -> dict[str, Any]:
    quota = state.settings.responses.max_tenant_bytes
    return {"object": "storage", "data": [
        {**line.as_json(), "response_quota_bytes": quota} for line in lines]}


async def _usage(state: GatewayState, tenant: str | None) -> list[TenantStorage]:
    responses = state.responses
    return await responses.store.usage(tenant, responses.clock())


@router.get("/admin/storage")
async def admin_storage(
    tenant: str | None = None,
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Stored responses and their bytes per tenant (those storing any)."""
    return _body(state, await _usage(state, tenant))


@router.get("/v1/storage")
async def own_storage(
    tenant: str | None = None,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    """The caller's own tenant's stored responses; asking for another tenant is refused."""
    if tenant is not None and tenant != principal.tenant:
        raise PermissionDeniedError("a key may only read its own tenant's storage",
                                    param="tenant")
    lines = await _usage(state, principal.tenant)
    return _body(state, lines or [TenantStorage(principal.tenant, 0, 0)])
