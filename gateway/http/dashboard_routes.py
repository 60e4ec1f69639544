"""``/dashboard``: the live operator page, its static assets and its history API;
``/dashboard/admin``: the admin page (keys, tenants, spend, the ledger's newest rows).

The pages and their assets hold no data and are served to anyone; a page asks for the
admin key (kept in ``sessionStorage``) and calls the JSON APIs with it as a bearer token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from gateway.errors import NotFoundError
from gateway.http.admin_routes import require_admin
from gateway.http.state import GatewayState, gateway_state
from gateway.serving.accounting import Principal

STATIC = Path(__file__).resolve().parent.parent / "observability" / "static"
ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "admin.js": "text/javascript",
    "admin_spend.js": "text/javascript",
    "admin.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}
NO_CACHE = {"cache-control": "no-cache"}

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("")
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)


@router.get("/admin")
async def admin_page() -> FileResponse:
    """Keys, tenants and spend; it calls ``/admin/*`` with the admin key."""
    return FileResponse(STATIC / "admin.html", media_type="text/html", headers=NO_CACHE)


@router.get("/assets/{name:path}")
async def dashboard_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no dashboard asset {name!r}")
    return FileResponse(STATIC / name, media_type=media_type, headers=NO_CACHE)


@router.get("/api/history")
async def dashboard_history(
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Plot series of the last samples: rates, percentiles, cost, acceptance, queue."""
    return state.observability.dashboard_history()
