"""``/metrics``: the app's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from gateway.errors import PermissionDeniedError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.observability.hub import METRICS_CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request,
    state: GatewayState = Depends(gateway_state),
    authorization: str | None = Header(default=None),
) -> Response:
    """Open by default (scraped in-cluster); ``observability.metrics_require_admin`` locks it."""
    if state.settings.observability.metrics_require_admin and state.settings.auth.enabled:
        principal = await principal_of(request, authorization)
        if not principal.is_admin:
            raise PermissionDeniedError("this route needs the admin key")
    return Response(state.observability.exposition(), media_type=METRICS_CONTENT_TYPE)
