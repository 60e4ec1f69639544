"""Keys with models, expiry, parallel limit and metadata; edited, rotated, expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.fake import FakeEngine
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.auth.tenancy import (
    OTHER_MODEL,
    body,
    model_ids,
    patch_key,
    rfc3339,
    two_model_client,
    unique,
)
from tests.gateway.conftest import sqlite_url
from tests.gateway.limits.test_limiters import REDIS
from tests.gateway.metered import ADMIN, bearer, create_key, metered_settings, metering_of


async def test_key_when_created_with_terms_then_shown_kept_and_listed_with_spend(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        key = await create_key(client, unique(), models=[MODEL], max_parallel_requests=3,
                               expires_at="2999-01-01T02:00:00+02:00",
                               metadata={"team": "search", "cost_centre": 42},
                               budget_usd="1.50", budget_period="day")
        assert (key["models"], key["max_parallel_requests"], key["expires_at"]) == (
            [MODEL], 3, "2999-01-01T00:00:00Z")
        assert key["metadata"] == {"team": "search", "cost_centre": 42}
        assert key["budget_usd"] == "1.5" and key["key"].startswith("sk-gw-")
        ok = await client.post("/v1/completions", json=body(), headers=bearer(key))
        assert ok.status_code == 200
        shown = (await client.get(f"/admin/keys/{key['id']}", headers=ADMIN)).json()
        assert "key" not in shown and shown["models"] == [MODEL]
        assert shown["period_spend_usd"] == ok.headers["x-request-cost"]
        listed = (await client.get("/admin/keys", headers=ADMIN)).json()["data"]
        assert [k["period_spend_usd"] for k in listed] == [ok.headers["x-request-cost"]]


async def test_key_when_model_outside_its_list_then_403_and_nothing_reserved(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, state):
        key = await create_key(client, unique(), models=[OTHER_MODEL], rpm=1)
        denied = await client.post("/v1/completions", json=body(MODEL), headers=bearer(key))
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "permission_error", "permission_denied", "model")
        async with metering_of(state).database.connect() as connection:
            rows = await connection.scalar(select(func.count()).select_from(LedgerRow))
        assert rows == 0
        # the refusal took nothing from the key's one request per minute
        allowed = await client.post("/v1/completions", json=body(OTHER_MODEL),
                                    headers=bearer(key))
        assert allowed.status_code == 200


async def test_models_when_listed_then_a_key_sees_only_its_own_models(database_url: str) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        narrow = await create_key(client, unique(), models=[OTHER_MODEL, "not-served"])
        every = await create_key(client, unique())
        assert await model_ids(client, bearer(narrow)) == [OTHER_MODEL]
        assert await model_ids(client, bearer(every)) == sorted([MODEL, OTHER_MODEL])
        assert await model_ids(client, ADMIN) == sorted([MODEL, OTHER_MODEL])


async def test_key_when_patched_then_new_terms_apply_at_once_and_null_clears(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        key = await create_key(client, unique(), name="ci", metadata={"a": 1})
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200
        patched = await patch_key(client, key["id"], models=[OTHER_MODEL], rpm=1)
        assert (patched["models"], patched["rpm"], patched["name"], patched["metadata"]) == (
            [OTHER_MODEL], 1, "ci", {"a": 1})  # fields not sent are kept
        denied = await client.post("/v1/completions", json=body(), headers=bearer(key))
        assert denied.json()["error"]["code"] == "permission_denied"
        assert (await client.post("/v1/completions", json=body(OTHER_MODEL),
                                  headers=bearer(key))).status_code == 200
        limited = await client.post("/v1/completions", json=body(OTHER_MODEL),
                                    headers=bearer(key))
        assert limited.status_code == 429
        cleared = await patch_key(client, key["id"], models=None, rpm=None, name=None)
        assert (cleared["models"], cleared["rpm"], cleared["name"]) == (None, None, None)
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200


async def test_key_when_expired_then_401_expired_api_key(database_url: str) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        key = await create_key(client, unique(), expires_at=rfc3339(timedelta(hours=1)))
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200
        await patch_key(client, key["id"], expires_at=rfc3339(timedelta(seconds=-1)))
        expired = await client.post("/v1/completions", json=body(), headers=bearer(key))
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "expired_api_key"
        models = await client.get("/v1/models", headers=bearer(key))
        assert models.status_code == 401
        await patch_key(client, key["id"], expires_at=None)  # never expires again
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(key))).status_code == 200


async def test_key_when_rotated_with_grace_then_both_work_until_it_ends_then_only_new(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        old = await create_key(client, unique(), rpm=100)
        response = await client.post(f"/admin/keys/{old['id']}/rotate", headers=ADMIN,
                                     json={"grace_period_s": 1.5})
        assert response.status_code == 200, response.text
        new = response.json()
        assert new["id"] == old["id"] and new["key"] != old["key"] and new["rpm"] == 100
        assert new["rotated_at"] and new["previous_key_valid_until"]
        for key in (old, new):
            assert (await client.post("/v1/completions", json=body(),
                                      headers=bearer(key))).status_code == 200
        await asyncio.sleep(1.6)
        after = await client.post("/v1/completions", json=body(), headers=bearer(old))
        assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_api_key"
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(new))).status_code == 200
        spend = (await client.get("/admin/spend", params={"key": old["id"]},
                                  headers=ADMIN)).json()["totals"]
        assert spend["requests"] == 3  # one key: its spend spans the rotation


async def test_key_when_rotated_without_grace_then_old_secret_refused_at_once(
    database_url: str,
) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        old = await create_key(client, unique())
        new = (await client.post(f"/admin/keys/{old['id']}/rotate", headers=ADMIN)).json()
        assert new["previous_key_valid_until"] is None
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(old))).status_code == 401
        assert (await client.post("/v1/completions", json=body(),
                                  headers=bearer(new))).status_code == 200
        await client.delete(f"/admin/keys/{old['id']}", headers=ADMIN)
        again = await client.post(f"/admin/keys/{old['id']}/rotate", headers=ADMIN)
        assert again.status_code == 404


@pytest.mark.parametrize("terms, param", [
    ({"tenant": "admin"}, "reserved"),
    ({"tenant": "Anonymous"}, "reserved"),
    ({"tenant": "has space"}, "tenant name"),
    ({"tenant": "t", "expires_at": "2000-01-01T00:00:00Z"}, "in the past"),
    ({"tenant": "t", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
    ({"tenant": "t", "models": []}, "models"),
    ({"tenant": "t", "max_parallel_requests": 0}, "max_parallel_requests"),
    ({"tenant": "t", "budget_usd": "-1"}, "budget_usd"),
    ({"tenant": "t", "metadata": {"x": "y" * 5000}}, "metadata"),
    ({"tenant": "t", "colour": "red"}, "colour"),
])
async def test_key_when_created_with_bad_terms_then_400_naming_the_problem(
    tmp_path: Path, terms: dict[str, object], param: str,
) -> None:
    async with two_model_client(metered_settings(sqlite_url(tmp_path))) as (client, _):
        response = await client.post("/admin/keys", json=terms, headers=ADMIN)
        assert response.status_code == 400, response.text
        assert param in response.text
        assert (await client.get("/admin/keys", headers=ADMIN)).json()["data"] == []


async def test_patch_when_key_unknown_or_revoked_then_404(database_url: str) -> None:
    async with two_model_client(metered_settings(database_url)) as (client, _):
        key = await create_key(client, unique())
        await client.delete(f"/admin/keys/{key['id']}", headers=ADMIN)
        for key_id in (key["id"], "000000000000"):
            response = await client.patch(f"/admin/keys/{key_id}", json={"rpm": 5},
                                          headers=ADMIN)
            assert response.status_code == 404
        tenant_key = await create_key(client, unique())
        forbidden = await client.patch(f"/admin/keys/{tenant_key['id']}", json={"rpm": 5},
                                       headers=bearer(tenant_key))
        assert forbidden.status_code == 403


@pytest.mark.parametrize("redis_url", [None, REDIS], ids=["memory", "redis"])
async def test_parallel_when_key_allows_one_then_a_second_at_once_is_429_until_settled(
    database_url: str, redis_url: str | None,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 100, token_delay_s=0.02)
    async with two_model_client(metered_settings(database_url, redis_url), engine) as (
            client, _):
        key = await create_key(client, unique(), max_parallel_requests=1)
        first = asyncio.create_task(client.post("/v1/completions", json=body(max_tokens=60),
                                                headers=bearer(key)))
        while engine.stats().running == 0:
            assert not first.done(), (await first).text
            await asyncio.sleep(0.01)
        second = await client.post("/v1/completions", json=body(), headers=bearer(key))
        assert second.status_code == 429
        error = second.json()["error"]
        assert error["code"] == "parallel_requests_exceeded"
        assert second.headers["retry-after"] == "1"
        assert (await first).status_code == 200
        for _ in range(3):  # the slot came back when the first settled, every time
            assert (await client.post("/v1/completions", json=body(),
                                      headers=bearer(key))).status_code == 200
