"""``/metrics``: the app's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from gateway.auth.bearer import bearer_token, same_secret
from gateway.errors import PermissionDeniedError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.observability.hub import METRICS_CONTENT_TYPE

router = APIRouter()


def _metrics_token(state: GatewayState, authorization: str | None) -> bool:
    """Whether the bearer is the read-only metrics token (accepted on this route alone)."""
    expected = state.settings.observability.metrics_token
    token = bearer_token(authorization)
    return (expected is not None and token is not None
            and same_secret(token, expected.get_secret_value()))


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request,
    state: GatewayState = Depends(gateway_state),
    authorization: str | None = Header(default=None),
) -> Response:
    """Locked by default (``observability.metrics_require_admin``, auth on): the metrics
    token (Prometheus's, ``observability.metrics_token``) or the admin key reads it."""
    locked = state.settings.observability.metrics_require_admin and state.settings.auth.enabled
    if locked and not _metrics_token(state, authorization):
        principal = await principal_of(request, authorization)
        if not principal.is_admin:
            raise PermissionDeniedError("this route needs the metrics token or the admin key")
    return Response(state.observability.exposition(), media_type=METRICS_CONTENT_TYPE)
