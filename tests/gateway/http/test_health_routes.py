"""Per-model readiness: one model loading never takes the others (or the gateway) down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from engine.fake import CharRenderer, FakeEngine
from engine.liveness import Vitals
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import ADMIN_KEY, make_settings

READY, LOADING = "model-ready", "model-loading"


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class DeadEngine(FakeEngine):
    def vitals(self, now: float) -> Vitals:
        return Vitals(down_s=5, restart_failed=True)


async def client_for(*engines: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    registry = ModelRegistry([ServedModel(e.model_name, e, CharRenderer()) for e in engines])
    app = create_app(build_state(make_settings(), registry), manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g",
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


@pytest.fixture
async def two_models() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(FakeEngine(READY), FakeEngine(LOADING, ready=False)):
        yield client


async def test_ready_while_any_model_can_serve(two_models: httpx.AsyncClient) -> None:
    response = await two_models.get("/ready")
    assert response.status_code == 200
    assert response.json()["models"] == {READY: True, LOADING: False}
    assert (await two_models.get(f"/ready/{READY}")).status_code == 200
    assert (await two_models.get(f"/ready/{LOADING}")).status_code == 503
    assert (await two_models.get("/ready/no-such-model")).status_code == 404


async def test_request_for_a_model_without_a_ready_engine_is_a_503_for_that_model_only(
    two_models: httpx.AsyncClient,
) -> None:
    refused = await two_models.post("/v1/chat/completions", json=chat(LOADING))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "model_not_ready"
    assert LOADING in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    served = await two_models.post("/v1/chat/completions", json=chat(READY))
    assert served.status_code == 200, served.text


async def test_ready_when_no_model_can_serve_then_503() -> None:
    async for client in client_for(FakeEngine(LOADING, ready=False)):
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/health")).status_code == 200  # loading is alive


async def test_health_when_an_in_process_engine_is_dead_for_good_then_503() -> None:
    async for client in client_for(FakeEngine(READY), DeadEngine(LOADING)):
        response = await client.get("/health")
        assert response.status_code == 503
        assert LOADING in response.json()["problems"][0]
