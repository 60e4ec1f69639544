"""The fair queue through HTTP: a request past its queue deadline gets OpenAI's 429 envelope
with Retry-After, a bad priority header a 400 naming it, and /metrics shows each tenant's
queue (depth, waits, timeouts, served tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from engine.fake import CharRenderer
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import ADMIN_KEY, MODEL, make_settings
from tests.gateway.serving.offload.doubles import until
from tests.gateway.serving.test_queueing import GatedEngine

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def gated() -> GatedEngine:
    return GatedEngine(MODEL, reply="abcd")


@pytest.fixture
async def client(gated: GatedEngine) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings()
    limits = settings.limits.model_copy(update={"queue_timeout_s": 0.05})
    registry = ModelRegistry([ServedModel(MODEL, gated, CharRenderer(), seats=1)])
    state = build_state(settings.model_copy(update={"limits": limits}), registry)
    app = create_app(state, manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway",
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


async def test_chat_when_the_engine_is_full_past_the_deadline_then_429_queue_timeout(
        client: httpx.AsyncClient, gated: GatedEngine) -> None:
    first = asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
    await until(lambda: bool(gated.started))
    refused = await client.post("/v1/chat/completions", json=BODY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_timeout"
    assert int(refused.headers["retry-after"]) >= 1
    gated.finish(gated.started[0].request_id)
    assert (await first).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert f'llmgw_queue_timeouts_total{{model="{MODEL}",tenant="admin"}} 1.0' in metrics
    assert f'llmgw_queue_depth{{model="{MODEL}",tenant="admin"}} 0.0' in metrics
    assert f'llmgw_queue_wait_seconds_count{{model="{MODEL}",tenant="admin"}} 1.0' in metrics
    served = [line for line in metrics.splitlines()
              if line.startswith("llmgw_queue_served_tokens_total")]
    assert served and float(served[0].split()[-1]) > 4  # its prompt and 4 tokens
    assert f'llmgw_queue_capacity_seats{{model="{MODEL}"}} 1.0' in metrics


async def test_chat_when_the_priority_header_is_not_a_band_then_400_naming_it(
        client: httpx.AsyncClient) -> None:
    refused = await client.post("/v1/chat/completions", json=BODY,
                                headers={"x-llmgw-priority": "urgent"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "x-llmgw-priority"


async def test_responses_when_the_engine_is_full_past_the_deadline_then_429_queue_timeout(
        client: httpx.AsyncClient, gated: GatedEngine) -> None:
    # The Responses API goes through the same queue as chat, with the same request options
    first = asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
    await until(lambda: bool(gated.started))
    refused = await client.post("/v1/responses", json={"model": MODEL, "input": "hi"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "queue_timeout"
    gated.finish(gated.started[0].request_id)
    assert (await first).status_code == 200


async def test_responses_when_the_priority_header_is_not_a_band_then_400_naming_it(
        client: httpx.AsyncClient) -> None:
    refused = await client.post("/v1/responses", json={"model": MODEL, "input": "hi"},
                                headers={"x-llmgw-priority": "urgent"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "x-llmgw-priority"
