"""``/metrics``: Prometheus text; it names tenants and their spend, so it needs the admin key
unless configured open."""

from __future__ import annotations

import httpx

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.settings import ObservabilitySettings
from tests.conftest import ADMIN_KEY, fake_state, make_settings


async def test_metrics_when_configured_open_then_prometheus_text_without_a_key(
    fake_engine: FakeEngine,
) -> None:
    settings = make_settings(observability=ObservabilitySettings(metrics_require_admin=False))
    app = create_app(fake_state(fake_engine, settings), manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE llmgw_requests_total counter" in response.text
    assert "# TYPE llmgw_request_latency_seconds histogram" in response.text
    assert "request_id" not in response.text


async def test_metrics_when_defaults_then_401_without_and_200_with_the_admin_key(
    fake_engine: FakeEngine,
) -> None:
    app = create_app(fake_state(fake_engine, make_settings()), manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        assert (await client.get("/metrics")).status_code == 401
        allowed = await client.get("/metrics",
                                   headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert allowed.status_code == 200


async def test_metrics_when_two_apps_are_built_then_their_counts_are_separate(
    fake_engine: FakeEngine,
) -> None:
    first = fake_state(fake_engine)
    second = fake_state(fake_engine)
    first.observability.metrics.requests.labels("m", "t", "ok").inc()
    labels = {"model": "m", "tenant": "t", "status": "ok"}
    assert first.registry.get_sample_value("llmgw_requests_total", labels) == 1
    assert second.registry.get_sample_value("llmgw_requests_total", labels) is None
