"""What every route needs, hung on ``app.state`` and reached through dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Header, Request
from prometheus_client import CollectorRegistry

from gateway.auth.bearer import Authenticator
from gateway.auth.throttle import FailedAuthThrottle
from gateway.batches.service import Batches
from gateway.caching.cache import ResponseCache
from gateway.errors import AuthenticationError
from gateway.limits.in_flight import InFlight
from gateway.observability.hub import Observability
from gateway.observability.queue_metrics import QueueCollector
from gateway.responses.service import Responses
from gateway.responses.store import MemoryResponseStore, ResponseStore, SqlResponseStore
from gateway.serving.accounting import Accounting, Principal
from gateway.serving.fallbacks import Fallbacks
from gateway.serving.offload.pool import PlanningPool
from gateway.serving.pipeline import Pipeline, renderers_of
from gateway.serving.registry import ModelRegistry
from gateway.serving.salt import TenantSalt
from gateway.settings import Settings
from gateway.upstream.registry import UpstreamRegistry

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
    upstreams: UpstreamRegistry = field(default_factory=UpstreamRegistry)  # external APIs
    batches: Batches | None = None  # files, batches and their worker (needs metering)
    cache: ResponseCache = field(init=False)  # the exact response cache
    # The registry /metrics serves; pass one in to share it with metering's counters.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    observability: Observability = field(init=False)
    pipeline: Pipeline = field(init=False)  # plan, cache, ticket, run, format
    planning: PlanningPool = field(init=False)  # planning off the event loop, shared fairly
    in_flight: InFlight = field(init=False)  # engine sequences served at once (the edge cap)
    responses: Responses = field(init=False)  # the Responses API and its stored responses
    auth_throttle: FailedAuthThrottle = field(init=False)  # failed auth, per address

    def __post_init__(self) -> None:
        self.observability = Observability(self.settings.observability, self.models,
                                           self.registry)
        self.cache = ResponseCache.from_settings(
            self.settings.response_cache, self.settings.metering.redis_url, self.registry)
        self.planning = PlanningPool(renderers_of(self.models, self.upstreams),
                                     self.settings.planning)
        self.in_flight = InFlight(self.settings.limits.max_in_flight)
        self.pipeline = Pipeline(self.models, self.upstreams, self.accounting, self.cache,
                                 self.observability.observe, self.settings.limits,
                                 lambda: self.draining,
                                 Fallbacks(self.settings.fallback_routes()),
                                 TenantSalt.from_settings(self.settings.auth),
                                 planner=self.planning,
                                 admission=None if self.metering is None
                                 else self.metering.accounting)
        self.registry.register(QueueCollector(self.pipeline.queues, self.observability.tenants))
        store: ResponseStore = (MemoryResponseStore() if self.metering is None
                                else SqlResponseStore(self.metering.database))
        self.responses = Responses(self.pipeline, store, self.settings.responses)
        self.auth_throttle = FailedAuthThrottle(self.settings.auth.failed_auth_limit,
                                                self.settings.auth.failed_auth_window_s)


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state


def client_address(request: Request) -> str:
    """The caller's address: uvicorn has already replaced a trusted proxy's own address by
    the client its ``X-Forwarded-For`` names (``forwarded_allow_ips``)."""
    return request.client.host if request.client is not None else "unknown"


async def principal_of(
    request: Request, authorization: str | None = Header(default=None)
) -> Principal:
    """The caller, from its bearer token. The token is checked first (a hash and a key
    lookup): one that verifies always passes; failures are counted per client address, and
    an address past its budget gets 429s for its failures (not for valid keys)."""
    state = gateway_state(request)
    try:
        principal = await state.authenticator.authenticate(authorization)
    except AuthenticationError:
        state.auth_throttle.failed(client_address(request))  # past the budget: a 429
        raise
    request.state.principal = principal
    return principal
