"""Spend from the ledger: ``/admin/spend`` for operators, ``/v1/spend`` for a tenant's own;
``/admin/ledger``: the newest ledger rows, for operators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from gateway.errors import InvalidRequestError, PermissionDeniedError
from gateway.http.admin_routes import require_admin
from gateway.http.key_routes import metering_of
from gateway.http.state import principal_of
from gateway.metering.service import Metering
from gateway.metering.spend import TOTALS, SpendQuery, recent_rows, spend, spend_csv
from gateway.serving.accounting import Principal

router = APIRouter()
Format = Literal["json", "csv"]


def _instant(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date or datetime; naive values are UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequestError(f"{param} must be an ISO 8601 date or datetime",
                                  param=param) from exc
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _query(tenant: str | None, key: str | None, model: str | None, since: str | None,
           until: str | None, group_by: str | None, user: str | None = None,
           tag: str | None = None) -> SpendQuery:
    groups = tuple(g.strip() for g in (group_by or "").split(",") if g.strip())
    try:
        return SpendQuery(tenant=tenant, key_id=key, model=model,
                          since=_instant(since, "since"), until=_instant(until, "until"),
                          group_by=groups, user=user, tag=tag)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="group_by") from exc


async def _answer(metering: Metering, query: SpendQuery, fmt: Format) -> Response:
    lines = await spend(metering.database, query)
    if fmt == "csv":
        return Response(spend_csv(query, lines), media_type="text/csv")
    body: dict[str, Any] = {"object": "spend", "group_by": list(query.group_by),
                            "data": [line.as_json() for line in lines]}
    if not query.group_by:
        body["totals"] = body["data"][0] if body["data"] else dict.fromkeys(TOTALS, 0)
    return JSONResponse(body)


@router.get("/admin/spend", response_model=None)
async def admin_spend(
    tenant: str | None = None, key: str | None = None, model: str | None = None,
    since: str | None = None, until: str | None = None, group_by: str | None = None,
    user: str | None = None, tag: str | None = None,
    format: Format = Query("json"),
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> Response:
    """Totals (requests, tokens, cost_usd) over any tenant, key, model, end user, tag and
    time range; ``group_by`` any of tenant, key, model, status, day, user, tag, adapter."""
    query = _query(tenant, key, model, since, until, group_by, user, tag)
    return await _answer(metering, query, format)


@router.get("/v1/spend", response_model=None)
async def own_spend(
    tenant: str | None = None, key: str | None = None, model: str | None = None,
    since: str | None = None, until: str | None = None, group_by: str | None = None,
    user: str | None = None, tag: str | None = None,
    format: Format = Query("json"),
    metering: Metering = Depends(metering_of),
    principal: Principal = Depends(principal_of),
) -> Response:
    """The caller's own tenant's spend (its own end users and tags only); asking for
    another tenant is refused."""
    if tenant is not None and tenant != principal.tenant:
        raise PermissionDeniedError("a key may only read its own tenant's spend",
                                    param="tenant")
    query = _query(principal.tenant, key, model, since, until, group_by, user, tag)
    return await _answer(metering, query, format)


@router.get("/admin/ledger")
async def admin_ledger(
    tenant: str | None = None, key: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    metering: Metering = Depends(metering_of),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """The newest ledger rows (any tenant), newest first; open rows are ``reserved``."""
    rows = await recent_rows(metering.database, limit, tenant, key)
    return {"object": "list", "data": rows}
