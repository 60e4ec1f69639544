"""Liveness and readiness probes.

``/health`` (liveness) fails only for what a restart of this process cures: an in-process
engine that died and is not coming back, or that is stuck (engine/liveness.py). Remote
replicas are separate pods with probes of their own, so they never fail it. ``/ready`` is per
model: the gateway stays ready while any model can serve (a request for a model without a
ready engine is a 503 with ``Retry-After`` for that model only), and not while draining.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from engine import liveness
from gateway.errors import ModelNotFoundError
from gateway.http.state import GatewayState, gateway_state

router = APIRouter()
_POLICY = liveness.LivenessPolicy()


@router.get("/health")
async def health(state: GatewayState = Depends(gateway_state)) -> JSONResponse:
    """The process is alive, and no in-process engine is dead for good or stuck."""
    now = time.monotonic()
    problems = [p for m in state.models
                if (p := liveness.problem(m.engine, _POLICY, now)) is not None]
    if problems:
        return JSONResponse({"status": "failing", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(state: GatewayState = Depends(gateway_state)) -> JSONResponse:
    """Not draining, and some model can serve (or only upstream models are configured)."""
    models = {m.name: await m.engine.is_ready() for m in state.models}
    is_ready = (any(models.values()) or not models) and not state.draining
    body = {"status": "ready" if is_ready else "not_ready", "models": models,
            "draining": state.draining}
    return JSONResponse(body, status_code=200 if is_ready else 503)


@router.get("/ready/{model}")
async def model_ready(model: str, state: GatewayState = Depends(gateway_state)) -> JSONResponse:
    """One model: 200 when it has a ready engine and the gateway is not draining."""
    try:
        served = state.models.get(model)
    except ModelNotFoundError as exc:
        return JSONResponse(exc.envelope(), status_code=exc.status_code)
    is_ready = await served.engine.is_ready() and not state.draining
    return JSONResponse({"model": model, "ready": is_ready, "draining": state.draining},
                        status_code=200 if is_ready else 503)
