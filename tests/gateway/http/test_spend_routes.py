"""Spend totals: admin over everything, a tenant key over its own tenant only."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import httpx

from engine.fake import FakeEngine
from tests.conftest import MODEL
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings


def cost(prompt: int, completion: int) -> Decimal:
    return (prompt * Decimal("0.10") + completion * Decimal("0.40")) / 10**6


async def _spend_some(client: httpx.AsyncClient, key: dict[str, Any], times: int) -> None:
    for _ in range(times):
        body = {"model": MODEL, "prompt": "Hello", "max_tokens": 8}
        response = await client.post("/v1/completions", json=body, headers=bearer(key))
        assert response.status_code == 200


async def test_spend_when_tenants_differ_then_each_key_sees_only_its_own_tenant(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        a1, a2 = await create_key(client, "tenant-a"), await create_key(client, "tenant-a")
        b = await create_key(client, "tenant-b")
        await _spend_some(client, a1, 2)
        await _spend_some(client, a2, 1)
        await _spend_some(client, b, 4)
        own = (await client.get("/v1/spend", headers=bearer(a1))).json()["totals"]
        assert (own["requests"], own["prompt_tokens"], own["completion_tokens"]) == (3, 15, 24)
        assert Decimal(own["cost_usd"]) == 3 * cost(5, 8)
        other = await client.get("/v1/spend", params={"tenant": "tenant-b"}, headers=bearer(a1))
        assert other.status_code == 403
        assert other.json()["error"]["type"] == "permission_error"
        foreign_key = await client.get("/v1/spend", params={"key": b["id"]}, headers=bearer(a1))
        assert foreign_key.json()["totals"]["requests"] == 0
        assert (await client.get("/admin/spend", headers=bearer(b))).status_code == 403
        by_b = (await client.get("/v1/spend", headers=bearer(b))).json()["totals"]
        assert by_b["requests"] == 4


async def test_admin_spend_when_grouped_then_lines_per_group_and_csv_matches(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        a, b = await create_key(client, "tenant-a"), await create_key(client, "tenant-b")
        await _spend_some(client, a, 1)
        await _spend_some(client, b, 2)
        params = {"group_by": "tenant,model"}
        data = (await client.get("/admin/spend", params=params, headers=ADMIN)).json()["data"]
        assert [(d["tenant"], d["model"], d["requests"]) for d in data] == [
            ("tenant-a", MODEL, 1), ("tenant-b", MODEL, 2)]
        assert Decimal(data[1]["cost_usd"]) == 2 * cost(5, 8)
        response = await client.get("/admin/spend", params={**params, "format": "csv"},
                                    headers=ADMIN)
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [(r["tenant"], r["requests"], r["cost_usd"]) for r in rows] == [
            (d["tenant"], str(d["requests"]), d["cost_usd"]) for d in data]


async def test_admin_spend_when_time_range_excludes_rows_then_zero_totals(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        await _spend_some(client, await create_key(client, "t"), 1)
        future = await client.get("/admin/spend", params={"since": "2999-01-01"}, headers=ADMIN)
        assert future.json()["totals"]["requests"] == 0
        past = await client.get("/admin/spend", headers=ADMIN,
                                params={"since": "2000-01-01T00:00:00+02:00", "group_by": "day"})
        assert sum(d["requests"] for d in past.json()["data"]) == 1
        bad = await client.get("/admin/spend", params={"group_by": "colour"}, headers=ADMIN)
        assert bad.status_code == 400
