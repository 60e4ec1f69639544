"""Attribution on a fake engine (SQLite and PostgreSQL): the ledger keeps each request's end
user (``user``) and tags (``metadata`` pairs, ``x-llmgw-tags``), the same however the
request runs (non-streamed, streamed, cache hit, batch line, Responses API); spend groups by
them; a tenant's end users have their own RPM and budget; caps refuse with a 400."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import openai
from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.metering.tables import LedgerRow, LedgerTagRow
from gateway.settings import (
    BatchSettings,
    PriceSettings,
    PricingSettings,
    ResponseCacheSettings,
    Settings,
)
from tests.conftest import MODEL
from tests.gateway.batches.helpers import TERMINAL, output_lines, wait_for
from tests.gateway.metered import (
    ADMIN,
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
    served,
)

PRICE = PriceSettings(prompt=Decimal("0.10"), completion=Decimal("0.40"))
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}],
        "max_tokens": 8, "temperature": 0, "user": "alice", "metadata": {"team": "search"}}


def settings_for(database_url: str, **metering: Any) -> Settings:
    base = metered_settings(database_url)
    return base.model_copy(update={
        "metering": base.metering.model_copy(update=metering),
        "response_cache": ResponseCacheSettings(enabled_by_default=True),
        "batches": BatchSettings(poll_interval_s=0.05),
        "prices": PricingSettings(models={MODEL: PRICE})})


async def attribution(state: Any, request_id: str) -> tuple[str | None, set[str]]:
    async with metering_of(state).database.connect() as connection:
        row = (await connection.execute(
            select(LedgerRow).where(LedgerRow.id == request_id))).one()
        tags = (await connection.execute(
            select(LedgerTagRow.tag).where(LedgerTagRow.request_id == request_id))).all()
    return row.end_user, {tag for (tag,) in tags}


async def _batch_line(base_url: str, key: dict[str, Any]) -> str:
    """The ledger row id of one batch line with ``CHAT``'s body."""
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key["key"], max_retries=0)
    line = {"custom_id": "one", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    upload = await client.files.create(file=("in.jsonl", json.dumps(line).encode() + b"\n"),
                                       purpose="batch")
    batch = await client.batches.create(input_file_id=upload.id, completion_window="24h",
                                        endpoint="/v1/chat/completions")
    done = await wait_for(client, batch.id, TERMINAL)
    (output,) = await output_lines(client, done.output_file_id)
    return str(output["response"]["request_id"])


async def test_attribution_when_same_request_runs_every_way_then_same_user_and_tags(
    database_url: str,
) -> None:
    async with (served(FakeEngine(MODEL), settings_for(database_url)) as server,
                httpx.AsyncClient(base_url=server.base_url) as client):
        key = await create_key(client, "acme")
        plain = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        hit = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        streamed = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True},
            headers={**bearer(key), "cache-control": "no-store"})
        responses = await client.post("/v1/responses", headers=bearer(key), json={
            "model": MODEL, "input": "Capital of France?", "max_output_tokens": 8,
            "user": "alice", "metadata": {"team": "search"}, "store": False})
        assert (plain.headers["x-cache"], hit.headers["x-cache"],
                streamed.headers["x-cache"]) == ("miss", "hit", "bypass")
        assert responses.status_code == 200, responses.text
        ids = [r.headers["x-request-id"] for r in (plain, hit, streamed, responses)]
        ids.append(await _batch_line(server.base_url, key))
        for request_id in ids:
            assert await attribution(server.state, request_id) == ("alice", {"team:search"})
        spend = await client.get("/v1/spend", params={"group_by": "user,tag"},
                                 headers=bearer(key))
        assert [(d["user"], d["tag"], d["requests"]) for d in spend.json()["data"]] == [
            ("alice", "team:search", 5)]


async def test_spend_when_grouped_by_user_and_tag_then_each_tenant_sees_only_its_own(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), settings_for(database_url)) as (client, _):
        acme, other = await create_key(client, "acme"), await create_key(client, "other")
        for key, user, tags in ((acme, "alice", "a,b"), (acme, "bob", "b"), (acme, None, None),
                                (other, "mallory", "x")):
            headers = {**bearer(key), **({"x-llmgw-tags": tags} if tags else {})}
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 4,
                    **({"user": user} if user else {})}
            assert (await client.post("/v1/completions", json=body,
                                      headers=headers)).status_code == 200
        responses = await client.post("/v1/responses", headers={
            **bearer(acme), "x-llmgw-tags": "b"}, json={
            "model": MODEL, "input": "Hi", "max_output_tokens": 4, "user": "bob",
            "store": False})
        assert responses.status_code == 200, responses.text
        by_user = (await client.get("/v1/spend", params={"group_by": "user"},
                                    headers=bearer(acme))).json()["data"]
        assert {(d["user"], d["requests"]) for d in by_user} == {
            (None, 1), ("alice", 1), ("bob", 2)}
        by_tag = (await client.get("/v1/spend", params={"group_by": "tag"},
                                   headers=bearer(acme))).json()["data"]
        assert {(d["tag"], d["requests"]) for d in by_tag} == {("a", 1), ("b", 3), (None, 1)}
        tagged_b = (await client.get("/v1/spend", params={"tag": "b", "group_by": "user"},
                                     headers=bearer(acme))).json()["data"]
        assert [(d["user"], d["requests"]) for d in tagged_b] == [("alice", 1), ("bob", 2)]
        alice = (await client.get("/v1/spend", params={"user": "mallory"},
                                  headers=bearer(acme))).json()["totals"]
        assert alice["requests"] == 0  # another tenant's end user: nothing to see
        admin = (await client.get("/admin/spend", params={"group_by": "tenant,user"},
                                  headers=ADMIN)).json()["data"]
        assert ("other", "mallory", 1) in [(d["tenant"], d["user"], d["requests"])
                                           for d in admin]
        by_adapter = (await client.get("/admin/spend", params={"group_by": "adapter"},
                                       headers=ADMIN)).json()["data"]
        assert [(d["adapter"], d["requests"]) for d in by_adapter] == [(None, 5)]


async def test_end_user_rpm_when_one_user_is_over_then_429_and_others_still_served(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), settings_for(database_url)) as (client, _):
        created = await client.post("/admin/tenants", headers=ADMIN,
                                    json={"name": "acme", "end_user_rpm": 2})
        assert created.json()["end_user_rpm"] == 2
        key = await create_key(client, "acme")

        async def ask(user: str) -> httpx.Response:
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2, "user": user}
            return await client.post("/v1/completions", json=body, headers=bearer(key))

        assert [(await ask("alice")).status_code for _ in range(3)] == [200, 200, 429]
        refused = await ask("alice")
        assert "end user's limit of 2 requests per minute" in refused.json()["error"]["message"]
        assert (await ask("bob")).status_code == 200
        patched = await client.patch("/admin/tenants/acme", headers=ADMIN,
                                     json={"end_user_rpm": None})
        assert patched.json()["end_user_rpm"] is None
        assert (await ask("alice")).status_code == 200


async def test_end_user_budget_when_spent_then_429_for_that_user_only(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), settings_for(database_url)) as (client, _):
        # One request holds (5 + 8) tokens' worst case: 5 x 0.10 + 8 x 0.40 = 3.7 micro-USD
        await client.post("/admin/tenants", headers=ADMIN,
                          json={"name": "acme", "end_user_budget_usd": "0.000005",
                                "end_user_budget_period": "day"})
        key = await create_key(client, "acme")
        body = {"model": MODEL, "prompt": "Hello", "max_tokens": 8}
        first = await client.post("/v1/completions", json={**body, "user": "alice"},
                                  headers=bearer(key))
        second = await client.post("/v1/completions", json={**body, "user": "alice"},
                                   headers=bearer(key))
        assert (first.status_code, second.status_code) == (200, 429)
        assert second.json()["error"]["code"] == "insufficient_quota"
        assert "end user's daily budget" in second.json()["error"]["message"]
        other = await client.post("/v1/completions", json={**body, "user": "bob"},
                                  headers=bearer(key))
        anonymous = await client.post("/v1/completions", json=body, headers=bearer(key))
        assert (other.status_code, anonymous.status_code) == (200, 200)


async def test_attribution_when_past_a_cap_then_400_naming_the_field(database_url: str) -> None:
    settings = settings_for(database_url, max_end_users_per_tenant=2, max_tags_per_tenant=2)
    async with metered_client(FakeEngine(MODEL), settings) as (client, _):
        key = await create_key(client, "acme")

        async def ask(headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 2, **fields}
            return await client.post("/v1/chat/completions", json=body,
                                     headers={**bearer(key), **(headers or {})})

        def param(response: httpx.Response) -> tuple[int, str]:
            return response.status_code, response.json()["error"]["param"]

        assert (await ask(user="u1")).status_code == 200
        assert (await ask(user="u2")).status_code == 200
        assert param(await ask(user="u3")) == (400, "user")
        assert (await ask(user="u1")).status_code == 200  # one already seen passes
        assert (await ask(metadata={"a": "1", "b": "2"})).status_code == 200
        assert param(await ask(metadata={"c": "3"})) == (400, "metadata")
        assert param(await ask({"x-llmgw-tags": "new"})) == (400, "x-llmgw-tags")
        assert param(await ask(user="x" * 257)) == (400, "user")
        assert param(await ask(metadata={str(i): "v" for i in range(17)})) == (400, "metadata")
        assert param(await ask({"x-llmgw-tags": "t" * 65})) == (400, "x-llmgw-tags")
