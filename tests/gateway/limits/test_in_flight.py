"""The gateway's in-flight cap counts engine sequences: a request holds one from the edge
and widens to ``n`` x prompts once planned, until its answer is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.errors import InvalidRequestError, ServiceUnavailableError
from gateway.limits.in_flight import InFlight
from gateway.settings import LimitSettings
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings
from tests.gateway.serving.offload.doubles import until


def test_hold_when_widened_then_counts_its_sequences_and_releases_them_all() -> None:
    gauge = InFlight(4)
    first = gauge.take()
    assert first is not None and gauge.count == 1
    first.widen(3, "n")
    first.widen(2, "n")  # never narrower
    assert gauge.count == 3
    second = gauge.take()
    assert second is not None
    with pytest.raises(ServiceUnavailableError) as full:
        second.widen(2, "prompt")
    assert full.value.code == "over_capacity" and gauge.count == 4  # nothing more taken
    assert gauge.take() is None
    with pytest.raises(InvalidRequestError) as never:
        second.widen(5, "prompt")
    assert never.value.param == "prompt" and never.value.status_code == 400
    first.release()
    second.release()
    assert gauge.count == 0


def client_of(engine: FakeEngine, max_in_flight: int) -> tuple[httpx.AsyncClient, Any]:
    state = fake_state(engine, make_settings(limits=LimitSettings(max_in_flight=max_in_flight)))
    app = create_app(state, manage_engines=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                               headers={"authorization": f"Bearer {ADMIN_KEY}"})
    return client, state


def chat(n: int, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": n,
            "temperature": 0, **extra}


async def test_request_when_its_fan_out_exceeds_the_cap_then_400_naming_n() -> None:
    client, state = client_of(FakeEngine(MODEL), max_in_flight=4)
    async with client:
        response = await client.post("/v1/chat/completions", json=chat(5))
        assert (await client.post("/v1/chat/completions", json=chat(4))).status_code == 200
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("n", "parallel_requests_exceed_limit")
    assert state.in_flight.count == 0


async def test_wide_request_when_running_then_its_sequences_fill_the_cap_until_it_ends() -> None:
    engine = FakeEngine(MODEL, reply="x" * 40, token_delay_s=0.05)
    client, state = client_of(engine, max_in_flight=4)
    async with client:
        wide = asyncio.create_task(client.post("/v1/chat/completions", json=chat(3)))
        await until(lambda: engine.stats().running == 3)
        assert state.in_flight.count == 3
        refused = await client.post("/v1/chat/completions", json=chat(2))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "over_capacity"
        assert (await client.get("/health")).status_code == 200  # probes are not counted
        fits = await client.post("/v1/chat/completions", json=chat(1, max_tokens=2))
        assert fits.status_code == 200  # 3 + 1
        assert (await wide).status_code == 200
    assert state.in_flight.count == 0
