"""A key over its limits costs no planning: the limiter's admission check refuses it after
authentication and before the request is planned (counted: nothing inline, nothing sent
to the planning pool), on the in-process and the Redis limiter."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from engine.fake import FakeEngine
from gateway.http.state import GatewayState
from tests.conftest import MODEL
from tests.gateway.limits.test_limiters import REDIS
from tests.gateway.metered import bearer, create_key, metered_client, metered_settings
from tests.gateway.serving.offload.doubles import until

# A schema of a few dozen kilobytes: checking it is the CPU work a hostile client sends.
HUGE = {"type": "object", "properties": {
    f"field_{i}": {"type": "string", "description": "d" * 40, "maxLength": 64}
    for i in range(300)}}


def light(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Hello", "max_tokens": 8, **extra}


def huge_schema() -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "fill the form"}],
            "max_tokens": 8, "response_format": {"type": "json_schema", "json_schema": {
                "name": "form", "schema": HUGE}}}


async def refused_unplanned(client: Any, state: GatewayState, auth: dict[str, str],
                            code: str) -> None:
    planned = dict(state.planning.counts)
    response = await client.post("/v1/chat/completions", json=huge_schema(), headers=auth)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == code
    assert dict(state.planning.counts) == planned  # not planned, not even queued


async def planned_for_others(client: Any, state: GatewayState) -> None:
    """The same request from a key with room is planned in the pool."""
    auth = bearer(await create_key(client, "globex"))
    pooled = state.planning.counts["pooled"]
    response = await client.post("/v1/chat/completions", json=huge_schema(), headers=auth)
    assert response.status_code != 429, response.text
    assert state.planning.counts["pooled"] == pooled + 1


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
async def test_key_over_its_rpm_when_it_sends_a_huge_schema_then_429_with_no_planning(
    database_url: str, redis: bool,
) -> None:
    settings = metered_settings(database_url, REDIS if redis else None)
    async with metered_client(FakeEngine(MODEL), settings) as (client, state):
        auth = bearer(await create_key(client, "acme", rpm=1))
        assert (await client.post("/v1/completions", json=light(), headers=auth)
                ).status_code == 200
        await refused_unplanned(client, state, auth, "rate_limit_exceeded")
        await planned_for_others(client, state)


async def test_key_with_every_parallel_slot_taken_when_it_sends_more_then_no_planning(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 40, token_delay_s=0.05)
    async with metered_client(engine, metered_settings(database_url)) as (client, state):
        auth = bearer(await create_key(client, "acme", max_parallel_requests=1))
        running = asyncio.create_task(client.post(
            "/v1/completions", json=light(max_tokens=40), headers=auth))
        await until(lambda: engine.stats().running == 1)
        await refused_unplanned(client, state, auth, "parallel_requests_exceeded")
        assert (await running).status_code == 200


async def test_key_whose_budget_is_spent_when_it_sends_more_then_no_planning(
    database_url: str,
) -> None:
    worst = (5 * Decimal("0.10") + 8 * Decimal("0.40")) / 10**6  # "Hello", max_tokens 8
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
            client, state):
        auth = bearer(await create_key(client, "acme", budget_usd=str(worst)))
        assert (await client.post("/v1/completions", json=light(), headers=auth)
                ).status_code == 200
        await refused_unplanned(client, state, auth, "insufficient_quota")


async def test_key_without_the_model_when_it_sends_a_huge_schema_then_403_no_planning(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
            client, state):
        auth = bearer(await create_key(client, "acme", models=["another-model"]))
        response = await client.post("/v1/chat/completions", json=huge_schema(), headers=auth)
        assert response.status_code == 403
        assert dict(state.planning.counts) == {}
