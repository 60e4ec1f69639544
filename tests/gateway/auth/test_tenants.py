"""Tenants as objects: their budget, RPM/TPM, parallel limit and models apply on top of
each of their keys' (the stricter wins), on the in-process and the Redis limiter; only
the admin sees them, and no refusal names a tenant."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.fake import FakeEngine
from tests.conftest import MODEL
from tests.gateway.auth.tenancy import (
    OTHER_MODEL,
    body,
    create_tenant,
    model_ids,
    two_model_client,
    unique,
)
from tests.gateway.limits.test_limiters import REDIS
from tests.gateway.metered import ADMIN, bearer, create_key, metered_settings

BACKENDS = pytest.mark.parametrize("redis_url", [None, REDIS], ids=["memory", "redis"])
PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.10"), Decimal("0.40")  # configs/prices.yaml


def worst(prompt: int, max_tokens: int) -> Decimal:
    return (prompt * PROMPT_PRICE + max_tokens * COMPLETION_PRICE) / 10**6


async def test_tenant_when_created_listed_and_patched_then_round_trips(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        name = unique()
        created = await create_tenant(client, name, budget_usd="10", budget_period="day",
                                      rpm=60, models=[MODEL], metadata={"owner": "ml"})
        assert (created["name"], created["budget_usd"], created["budget_period"],
                created["rpm"], created["tpm"], created["models"], created["metadata"]) == (
            name, "10", "day", 60, None, [MODEL], {"owner": "ml"})
        patched = await client.patch(f"/admin/tenants/{name}", headers=ADMIN,
                                     json={"tpm": 1000, "models": None,
                                           "max_parallel_requests": 4})
        assert patched.status_code == 200, patched.text
        shown = (await client.get(f"/admin/tenants/{name}", headers=ADMIN)).json()
        assert (shown["rpm"], shown["tpm"], shown["models"], shown["max_parallel_requests"],
                shown["budget_usd"]) == (60, 1000, None, 4, "10")
        assert shown["period_spend_usd"] == "0"
        listed = (await client.get("/admin/tenants", headers=ADMIN)).json()["data"]
        assert [t["name"] for t in listed] == [name]
        missing = await client.patch("/admin/tenants/nobody", json={"rpm": 1}, headers=ADMIN)
        assert missing.status_code == 404


@pytest.mark.parametrize("name", ["admin", "anonymous", "ADMIN", "", "a/b", "x" * 129])
async def test_tenant_when_name_reserved_or_malformed_then_400(
    database_url: str, name: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        response = await client.post("/admin/tenants", json={"name": name}, headers=ADMIN)
        assert response.status_code == 400, response.text
        assert (await client.get("/admin/tenants", headers=ADMIN)).json()["data"] == []


async def test_tenant_when_name_taken_then_409(database_url: str) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, rpm=5)
        again = await client.post("/admin/tenants", json={"name": name}, headers=ADMIN)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "already_exists"


async def test_tenant_routes_when_called_with_a_tenant_key_then_403(database_url: str) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        name = unique()
        await create_tenant(client, name)
        key = await create_key(client, name)
        for method, path in (("GET", "/admin/tenants"), ("POST", "/admin/tenants"),
                             ("GET", f"/admin/tenants/{name}"),
                             ("PATCH", f"/admin/tenants/{name}")):
            response = await client.request(method, path, headers=bearer(key),
                                            json={"name": unique()})
            assert response.status_code == 403, (method, path)
        assert name not in (await client.get("/v1/spend", headers=bearer(key))).text


@BACKENDS
async def test_tenant_rpm_when_stricter_than_its_keys_then_shared_by_all_of_them(
    database_url: str, redis_url: str | None,
) -> None:
    async with two_model_client(metered_settings(database_url, redis_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, rpm=2)
        first, second = [await create_key(client, name, rpm=100) for _ in range(2)]
        other = await create_key(client, unique(), rpm=100)  # another tenant is not counted
        codes = [(await client.post("/v1/completions", json=body(), headers=bearer(k))
                  ).status_code for k in (first, other, second, first)]
        assert codes == [200, 200, 200, 429]
        refused = await client.post("/v1/completions", json=body(), headers=bearer(second))
        error = refused.json()["error"]
        assert "this tenant's limit of 2 requests per minute" in error["message"]
        assert name not in refused.text


@BACKENDS
async def test_key_rpm_when_stricter_than_its_tenant_then_the_key_refuses(
    database_url: str, redis_url: str | None,
) -> None:
    async with two_model_client(metered_settings(database_url, redis_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, rpm=100)
        key = await create_key(client, name, rpm=1)
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200
        refused = await client.post("/v1/completions", json=body(), headers=bearer(key))
        assert "this key's limit of 1 requests per minute" in refused.json()["error"]["message"]


@BACKENDS
async def test_tenant_budget_when_two_keys_spend_it_then_refused_as_insufficient_quota(
    database_url: str, redis_url: str | None,
) -> None:
    async with two_model_client(metered_settings(database_url, redis_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, budget_usd=str(worst(2, 4) * 3))  # three requests
        keys = [await create_key(client, name, budget_usd="1") for _ in range(2)]
        codes = [(await client.post("/v1/completions", json=body(), headers=bearer(keys[i % 2]))
                  ).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = await client.post("/v1/completions", json=body(), headers=bearer(keys[1]))
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota"
        assert "This tenant's monthly budget" in error["message"] and name not in refused.text
        spend = (await client.get(f"/admin/tenants/{name}", headers=ADMIN)).json()
        assert Decimal(spend["period_spend_usd"]) == worst(2, 4) * 3


@BACKENDS
async def test_tenant_budget_when_raised_then_counter_reseeded_from_the_ledger(
    database_url: str, redis_url: str | None,
) -> None:
    async with two_model_client(metered_settings(database_url, redis_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, budget_usd=str(worst(2, 4)))
        key = await create_key(client, name)
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 429
        raised = await client.patch(f"/admin/tenants/{name}", headers=ADMIN,
                                    json={"budget_usd": str(worst(2, 4) * 2)})
        assert raised.status_code == 200
        codes = [(await client.post("/v1/completions", json=body(), headers=bearer(key))
                  ).status_code for _ in range(2)]
        assert codes == [200, 429]  # the first request still counts after the change


async def test_tenant_models_when_restricted_then_every_key_is_limited_to_both_lists(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        name = unique()
        await create_tenant(client, name, models=[OTHER_MODEL])
        every = await create_key(client, name)
        both = await create_key(client, name, models=[MODEL, OTHER_MODEL])
        disjoint = await create_key(client, name, models=[MODEL])
        assert await model_ids(client, bearer(every)) == [OTHER_MODEL]
        assert await model_ids(client, bearer(both)) == [OTHER_MODEL]
        assert await model_ids(client, bearer(disjoint)) == []
        denied = await client.post("/v1/completions", json=body(MODEL), headers=bearer(every))
        assert denied.status_code == 403 and name not in denied.text
        assert (await client.post("/v1/completions", json=body(OTHER_MODEL),
                                  headers=bearer(every))).status_code == 200


@BACKENDS
async def test_tenant_parallel_when_its_keys_fill_it_then_the_next_is_429(
    database_url: str, redis_url: str | None,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 100, token_delay_s=0.02)
    async with two_model_client(metered_settings(database_url, redis_url), engine) as (
            client, _):
        name = unique()
        await create_tenant(client, name, max_parallel_requests=1)
        first, second = await create_key(client, name), await create_key(client, name)
        running = asyncio.create_task(client.post(
            "/v1/completions", json=body(max_tokens=60), headers=bearer(first)))
        while engine.stats().running == 0:
            assert not running.done(), (await running).text
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/completions", json=body(), headers=bearer(second))
        assert refused.status_code == 429
        assert "this tenant's limit is 1 in parallel" in refused.json()["error"]["message"]
        assert (await running).status_code == 200
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(second))).status_code == 200
