"""``Observability``: one app's metrics, dashboard history and request observers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.errors import GatewayError
from gateway.observability.history import History
from gateway.observability.metrics import GatewayMetrics, TenantLabels
from gateway.observability.observer import MetricsObserver, RunObserver
from gateway.observability.panels import build_panels
from gateway.serving.registry import ServedModel
from gateway.settings import ObservabilitySettings

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class Observability:
    """Built once per app (its own ``CollectorRegistry``: tests build many apps)."""

    def __init__(self, settings: ObservabilitySettings, models: Iterable[ServedModel],
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics(registry)
        self.metrics.watch_engines(models)
        self.tenants = TenantLabels(settings.max_tenant_labels)
        self.history = History(self.metrics.registry, settings.sample_interval_s,
                               settings.history_points)

    def observe(self, request_id: str, model: str, tenant: str) -> RunObserver:
        """The observer of one request run."""
        return MetricsObserver(self.metrics, request_id, model, self.tenants(tenant))

    def on_error(self, request: Request, error: GatewayError) -> None:
        """Count an error response; a 429 is also a limit rejection for its tenant."""
        self.metrics.http_errors.labels(str(error.status_code), error.error_type).inc()
        if error.status_code == 429:
            principal = getattr(request.state, "principal", None)
            tenant = self.tenants(principal.tenant) if principal is not None else "unknown"
            self.metrics.limit_rejections.labels(tenant, error.code or error.error_type).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.metrics.registry)

    def dashboard_history(self) -> dict[str, Any]:
        self.history.sample_if_due()
        body = build_panels(self.history.points(), self.settings.window_s)
        body["interval_s"] = self.settings.sample_interval_s
        return body

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep sampling the dashboard history for the app's lifetime."""
        async with self.history.sampling():
            yield
