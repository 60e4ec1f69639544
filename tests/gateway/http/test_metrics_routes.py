"""``/metrics``: Prometheus text; it names tenants and their spend, so it needs the admin key
or the read-only metrics token (refused everywhere else) unless configured open."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.settings import ObservabilitySettings
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import metered_client, metered_settings


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


METRICS_TOKEN = "metrics-token-0123456789abcdef"


def _routes_needing_a_key() -> list[tuple[str, str]]:
    """Every route that authenticates: /v1, /admin and the dashboard's data."""
    from fastapi.routing import APIRoute

    app = create_app(fake_state(FakeEngine(MODEL)), manage_engines=False)
    return [(method, route.path) for route in app.routes if isinstance(route, APIRoute)
            and route.path.startswith(("/v1", "/admin", "/dashboard/api"))
            for method in sorted(route.methods)]


def test_route_list_covers_the_api_the_admin_routes_and_the_dashboard_data() -> None:
    paths = {path for _, path in _routes_needing_a_key()}
    assert {"/v1/models", "/v1/chat/completions", "/v1/files", "/admin/keys",
            "/admin/spend", "/dashboard/api/history"} <= paths


async def test_metrics_token_when_configured_then_it_reads_metrics(tmp_path: Path) -> None:
    observability = ObservabilitySettings(metrics_token=SecretStr(METRICS_TOKEN))
    settings = metered_settings(sqlite_url(tmp_path), observability=observability)
    async with metered_client(FakeEngine(MODEL), settings) as (client, _):
        allowed = await client.get("/metrics", headers=_bearer(METRICS_TOKEN))
        wrong = await client.get("/metrics", headers=_bearer(METRICS_TOKEN + "x"))
        admin = await client.get("/metrics", headers=_bearer(ADMIN_KEY))
    assert allowed.status_code == 200 and "llmgw_requests_total" in allowed.text
    assert wrong.status_code == 401 and admin.status_code == 200


@pytest.mark.parametrize(("method", "path"), _routes_needing_a_key())
async def test_metrics_token_when_used_anywhere_but_metrics_then_401(
    method: str, path: str, tmp_path: Path,
) -> None:
    observability = ObservabilitySettings(metrics_token=SecretStr(METRICS_TOKEN))
    settings = metered_settings(sqlite_url(tmp_path), observability=observability)
    concrete = re.sub(r"\{[a-z_]+\}", "0123456789ab", path)
    async with metered_client(FakeEngine(MODEL), settings) as (client, _):
        refused = await client.request(method, concrete, json={},
                                       headers=_bearer(METRICS_TOKEN))
    assert refused.status_code == 401, (method, path, refused.text)
    assert refused.json()["error"]["code"] == "invalid_api_key"


def test_metrics_token_when_shorter_than_16_characters_then_the_settings_refuse_it() -> None:
    with pytest.raises(ValidationError):
        ObservabilitySettings(metrics_token=SecretStr("short"))


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
