"""``/admin/keys``: create (the key is shown once), list and revoke virtual API keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import InvalidRequestError, NotFoundError
from gateway.http.admin_routes import require_admin
from gateway.http.state import GatewayState, gateway_state
from gateway.limits.quota import Quota
from gateway.metering.service import Metering
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/admin/keys")


class KeyCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=128)
    budget_usd: Decimal | None = Field(None, ge=0, decimal_places=12)
    budget_period: Literal["day", "month"] = "month"
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    response_cache: bool | None = None  # repeatable requests may be answered from the cache

    def quota(self) -> Quota:
        return Quota(rpm=self.rpm, tpm=self.tpm, budget_usd=self.budget_usd,
                     budget_period=self.budget_period)


def metering_of(state: GatewayState = Depends(gateway_state)) -> Metering:
    if state.metering is None:
        raise NotFoundError("metering is not enabled on this gateway")
    return state.metering


@router.post("", status_code=201)
async def create_key(
    body: KeyCreateBody,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """A new key for a tenant. ``key`` is in this response only; it is stored hashed."""
    try:
        record, token = await metering.keys.create(body.tenant, body.quota(), body.name,
                                                   body.response_cache)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    return {**record.as_json(), "key": token}


@router.get("")
async def list_keys(
    tenant: str | None = None,
    include_revoked: bool = False,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    records = await metering.keys.list(tenant, include_revoked)
    return {"object": "list", "data": [r.as_json() for r in records]}


@router.delete("/{key_id}")
async def revoke_key(
    key_id: str,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    if not await metering.keys.revoke(key_id):
        raise NotFoundError(f"no live key {key_id!r}")
    return {"id": key_id, "revoked": True}
