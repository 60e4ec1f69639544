"""``/admin`` routes for operators (admin key when auth is on)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends

from engine.routing import ReplicaRouter
from gateway.errors import PermissionDeniedError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/admin")


async def require_admin(
    request_principal: Principal = Depends(principal_of),
    state: GatewayState = Depends(gateway_state),
) -> Principal:
    if state.settings.auth.enabled and not request_principal.is_admin:
        raise PermissionDeniedError("this route needs the admin key")
    return request_principal


@router.get("/engines")
async def engine_stats(
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Each engine's own counters (running, waiting, token totals, speculation); a model on
    remote replicas also lists each replica's state and load."""
    engines: dict[str, Any] = {}
    for m in state.models:
        engines[m.name] = {"ready": await m.engine.is_ready(),
                           **dataclasses.asdict(m.engine.stats())}
        if isinstance(m.engine, ReplicaRouter):
            engines[m.name]["replicas"] = m.engine.replica_states()
    return engines
