"""What every route needs, hung on ``app.state`` and reached through dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Header, Request

from gateway.auth.bearer import Authenticator
from gateway.serving.accounting import Accounting, Principal
from gateway.serving.registry import ModelRegistry
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.metering.service import Metering


@dataclass
class GatewayState:
    settings: Settings
    models: ModelRegistry
    accounting: Accounting
    authenticator: Authenticator
    draining: bool = False
    metering: Metering | None = None  # ledger, keys and limits (None: unmetered)


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state


async def principal_of(
    request: Request, authorization: str | None = Header(default=None)
) -> Principal:
    principal = await gateway_state(request).authenticator.authenticate(authorization)
    request.state.principal = principal
    return principal
