"""``/admin/keys``: create (the key is shown once), list with spend, edit, rotate and revoke
virtual API keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Body, Depends

from gateway.auth.key_records import KeyRecord
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.http.admin_bodies import KeyCreateBody, KeyPatchBody, RotateBody
from gateway.http.admin_routes import require_admin
from gateway.http.state import GatewayState, gateway_state
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import usd_text
from gateway.metering.service import Metering
from gateway.metering.spend import PeriodSpend, period_spend
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/admin/keys")
T = TypeVar("T")


def metering_of(state: GatewayState = Depends(gateway_state)) -> Metering:
    if state.metering is None:
        raise NotFoundError("metering is not enabled on this gateway")
    return state.metering


def valid(build: Callable[[], T]) -> T:
    """What ``build`` makes; terms it refuses (``ValueError``) are a 400."""
    try:
        return build()
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc


async def checked(work: Awaitable[T]) -> T:
    """``work``'s result; terms it refuses (``ValueError``) are a 400."""
    try:
        return await work
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc


def with_spend(record: KeyRecord, spent: PeriodSpend) -> dict[str, Any]:
    """The key and what it spent in its current budget period (settled, UTC)."""
    period = record.quota.budget_period
    return {**record.as_json(), "period_spend_usd": usd_text(spent.of(record.key_id, period))}


async def _live(metering: Metering, key_id: str, record: KeyRecord | None) -> dict[str, Any]:
    if record is None:
        raise NotFoundError(f"no live key {key_id!r}")
    return with_spend(record, await period_spend(metering.database, "key", utcnow()))


@router.post("", status_code=201)
async def create_key(
    body: KeyCreateBody,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """A new key for a tenant. ``key`` is in this response only; it is stored hashed."""
    terms = valid(body.terms)
    record, token = await checked(metering.keys.create(body.tenant, terms))
    return {**record.as_json(), "key": token}


@router.get("")
async def list_keys(
    tenant: str | None = None,
    include_revoked: bool = False,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    records = await metering.keys.list(tenant, include_revoked)
    spent = await period_spend(metering.database, "key", utcnow())
    return {"object": "list", "data": [with_spend(r, spent) for r in records]}


@router.get("/{key_id}")
async def get_key(
    key_id: str,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    record = await metering.keys.get(key_id)
    if record is None:
        raise NotFoundError(f"no key {key_id!r}")
    return with_spend(record, await period_spend(metering.database, "key", utcnow()))


@router.patch("/{key_id}")
async def update_key(
    key_id: str,
    body: KeyPatchBody,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Change a live key's models, limits, budget, expiry, name or metadata; the fields
    sent change, ``null`` clears one. Requests see the change at once."""
    record = await checked(metering.keys.update(key_id, body.apply))
    return await _live(metering, key_id, record)


@router.post("/{key_id}/rotate")
async def rotate_key(
    key_id: str,
    body: RotateBody = Body(default_factory=RotateBody),
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """A new secret for the key (same id, limits and spend); the old secret keeps working
    for ``grace_period_s`` seconds. ``key`` is in this response only."""
    rotated = await checked(metering.keys.rotate(key_id, body.grace_period_s))
    if rotated is None:
        raise NotFoundError(f"no live key {key_id!r}")
    record, token = rotated
    return {**record.as_json(), "key": token}


@router.delete("/{key_id}")
async def revoke_key(
    key_id: str,
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    if not await metering.keys.revoke(key_id):
        raise NotFoundError(f"no live key {key_id!r}")
    return {"id": key_id, "revoked": True}
