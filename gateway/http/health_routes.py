"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from gateway.http.state import GatewayState, gateway_state

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: GatewayState = Depends(gateway_state)) -> JSONResponse:
    """Every engine is loaded and answering, and the gateway is not draining."""
    models = {m.name: await m.engine.is_ready() for m in state.models}
    is_ready = all(models.values()) and not state.draining
    body = {"status": "ready" if is_ready else "not_ready", "models": models,
            "draining": state.draining}
    return JSONResponse(body, status_code=200 if is_ready else 503)
