"""``/dashboard``: an open page and assets, an admin-only history API."""

from __future__ import annotations

import httpx

from tests.conftest import MODEL

PANELS = {"requests", "latency", "ttft", "tokens", "errors", "cost_model", "cost_tenant",
          "acceptance", "engine"}


async def test_dashboard_when_opened_without_a_key_then_serves_the_page(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.get("/dashboard", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="chat-form"' in response.text
    assert "/dashboard/assets/vendor/uPlot.iife.min.js" in response.text
    assert "https://" not in response.text  # nothing from a CDN


async def test_dashboard_assets_when_vendored_then_served_and_others_are_404(
    fake_client: httpx.AsyncClient,
) -> None:
    plot = await fake_client.get("/dashboard/assets/vendor/uPlot.iife.min.js")
    assert plot.status_code == 200
    assert plot.headers["content-type"].startswith("text/javascript")
    assert "uPlot" in plot.text
    script = await fake_client.get("/dashboard/assets/dashboard.js")
    assert script.status_code == 200
    for name in ("index.html", "../hub.py", "vendor/uPlot.LICENSE"):
        missing = await fake_client.get(f"/dashboard/assets/{name}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


async def test_dashboard_history_when_no_key_then_401(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.get("/dashboard/api/history", headers={"authorization": ""})
    assert response.status_code == 401


async def test_dashboard_history_when_admin_then_panels_with_one_time_axis(
    fake_client: httpx.AsyncClient,
) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    assert (await fake_client.post("/v1/chat/completions", json=chat)).status_code == 200
    response = await fake_client.get("/dashboard/api/history")
    assert response.status_code == 200
    body = response.json()
    assert set(body["panels"]) == PANELS
    assert len(body["t"]) == 1
    for panel in body["panels"].values():
        assert all(len(series) == len(body["t"]) for series in panel["series"].values())
    assert body["interval_s"] > 0
