"""Stored responses are bounded (issue #31 item 5), on SQLite and PostgreSQL around a fake
engine: a tenant's quota (a 413 before generating, store: false still served), a TTL (an
injected clock: expired is 404 at once, the purge deletes the rows), continuations that store
only their new items yet continue the whole conversation, tenant scoping, store: false
writing nothing, the chain bound, and the storage view."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.http.state import GatewayState
from gateway.metering.ledger import utcnow
from gateway.responses.tables import ResponseRow
from gateway.settings import ResponsesSettings
from tests.conftest import MODEL
from tests.gateway.metered import (
    ADMIN,
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
)

Client = tuple[httpx.AsyncClient, GatewayState]


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextlib.asynccontextmanager
async def gateway(database_url: str, engine: FakeEngine, clock: Clock,
                  **responses: Any) -> AsyncIterator[Client]:
    settings = metered_settings(database_url, responses=ResponsesSettings(**responses))
    async with metered_client(engine, settings) as (client, state):
        state.responses.clock = clock
        yield client, state


async def rows(state: GatewayState) -> list[ResponseRow]:
    async with metering_of(state).database.connect() as connection:
        found = (await connection.execute(select(ResponseRow))).all()
    return [ResponseRow(**row._mapping) for row in found]


async def create(client: httpx.AsyncClient, key: dict[str, Any], text: str,
                 **fields: Any) -> httpx.Response:
    return await client.post("/v1/responses", headers=bearer(key),
                             json={"model": MODEL, "input": text, **fields})


async def chain(client: httpx.AsyncClient, key: dict[str, Any], turns: int) -> list[str]:
    ids: list[str] = []
    for turn in range(turns):
        previous = {"previous_response_id": ids[-1]} if ids else {}
        response = await create(client, key, f"question {turn}?", **previous)
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


async def test_quota_when_tenant_is_full_then_413_before_generating_and_store_false_served(
    database_url: str, clock: Clock,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 1000)  # a stored response: about 3300 bytes
    async with gateway(database_url, engine, clock, max_tenant_bytes=4096) as (client, _state):
        acme, globex = [await create_key(client, t) for t in ("acme", "globex")]
        assert (await create(client, acme, "one")).status_code == 200
        assert (await create(client, acme, "two")).status_code == 200
        generated = engine.stats().generation_tokens_total
        refused = await create(client, acme, "three")
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("storage_quota_exceeded", "store")
        assert "store: false" in error["message"]
        assert engine.stats().generation_tokens_total == generated  # refused before the engine
        assert (await create(client, acme, "three", store=False)).status_code == 200
        assert (await create(client, globex, "one")).status_code == 200  # its own quota


async def test_ttl_when_clock_passes_it_then_404_at_once_and_purge_deletes_the_rows(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock, ttl_s=60) as (client, state):
        key = await create_key(client, "acme")
        first, second = await chain(client, key, 2)
        clock.now += timedelta(seconds=59)
        assert (await client.get(f"/v1/responses/{first}", headers=bearer(key))
                ).status_code == 200
        assert await state.responses.purge() == 0
        clock.now += timedelta(seconds=2)
        for response_id in (first, second):
            gone = await client.get(f"/v1/responses/{response_id}", headers=bearer(key))
            assert gone.status_code == 404, gone.text
        follow = await create(client, key, "more", previous_response_id=second)
        assert follow.status_code == 404
        assert follow.json()["error"]["param"] == "previous_response_id"
        usage = await client.get("/v1/storage", headers=bearer(key))
        assert usage.json()["data"][0]["response_bytes"] == 0
        assert len(await rows(state)) == 2  # unreadable, not yet purged
        assert await state.responses.purge() == 2
        assert await rows(state) == []


async def test_continuation_when_it_is_stored_then_the_responses_it_continues_live_as_long(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock, ttl_s=60) as (client, _state):
        key = await create_key(client, "acme")
        [first] = await chain(client, key, 1)
        clock.now += timedelta(seconds=50)
        second = (await create(client, key, "again", previous_response_id=first)).json()["id"]
        clock.now += timedelta(seconds=50)  # past first's own TTL, within second's
        assert (await create(client, key, "more", previous_response_id=second)
                ).status_code == 200


async def test_chain_when_five_turns_then_rows_grow_linearly_and_history_is_whole(
    database_url: str, clock: Clock,
) -> None:
    engine = FakeEngine(MODEL, reply="An answer.")
    async with gateway(database_url, engine, clock) as (client, state):
        key = await create_key(client, "acme")
        ids = await chain(client, key, 5)
        stored = {row.id: row for row in await rows(state)}
        sizes = [stored[i].size for i in ids]
        # Each row holds its own turn (the first echoes no previous_response_id): whole
        # histories would add 1300 bytes per turn.
        assert max(sizes) - min(sizes) < 100
        assert [stored[i].previous_id for i in ids] == [None, *ids[:-1]]
        principal = (await state.authenticator.authenticate(f"Bearer {key['key']}"))
        history, walked = await state.responses.chain(ids[-1], principal)
        assert walked == tuple(reversed(ids))
        # What one row held before: every input item and output item of the conversation.
        expected: list[dict[str, Any]] = []
        for turn, response_id in enumerate(ids):
            body = (await client.get(f"/v1/responses/{response_id}", headers=bearer(key))).json()
            expected += [{"type": "message", "role": "user", "content": f"question {turn}?"},
                         *body["output"]]
        assert list(history) == expected
        last = await create(client, key, "and?", previous_response_id=ids[-1])
        transcript = "".join(f"user: question {t}?\nassistant: An answer.\n" for t in range(5))
        assert last.json()["usage"]["input_tokens"] == len(transcript + "user: and?\n"
                                                           "assistant: ")


async def test_store_false_when_created_or_continued_then_nothing_is_written(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock) as (client, state):
        key = await create_key(client, "acme")
        unstored = await create(client, key, "hi", store=False)
        assert unstored.status_code == 200 and unstored.json()["store"] is False
        assert await rows(state) == []
        follow = await create(client, key, "x", previous_response_id=unstored.json()["id"])
        assert follow.status_code == 404
        [first] = await chain(client, key, 1)
        assert (await create(client, key, "x", previous_response_id=first, store=False)
                ).status_code == 200
        assert [row.id for row in await rows(state)] == [first]


async def test_chain_when_another_tenant_or_a_deleted_link_then_404_naming_the_field(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock) as (client, _state):
        acme, globex = [await create_key(client, t) for t in ("acme", "globex")]
        first, second = await chain(client, acme, 2)
        theirs = await create(client, globex, "x", previous_response_id=second)
        assert theirs.status_code == 404
        assert (await client.get(f"/v1/responses/{second}", headers=bearer(globex))
                ).status_code == 404
        assert (await client.delete(f"/v1/responses/{first}", headers=bearer(acme))
                ).status_code == 200
        broken = await create(client, acme, "x", previous_response_id=second)
        assert broken.status_code == 404
        error = broken.json()["error"]
        assert error["param"] == "previous_response_id" and first in error["message"]


async def test_chain_when_longer_than_max_chain_then_400_conversation_too_long(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock, max_chain=3) as (client, _state):
        key = await create_key(client, "acme")
        ids = await chain(client, key, 3)
        refused = await create(client, key, "x", previous_response_id=ids[-1])
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "conversation_too_long"


async def test_storage_view_when_tenants_store_then_bytes_per_tenant_for_admin_and_own(
    database_url: str, clock: Clock,
) -> None:
    async with gateway(database_url, FakeEngine(MODEL), clock) as (client, state):
        acme, globex = [await create_key(client, t) for t in ("acme", "globex")]
        await chain(client, acme, 2)
        await chain(client, globex, 1)
        sizes = {t: sum(r.size for r in await rows(state) if r.tenant == t)
                 for t in ("acme", "globex")}
        every = (await client.get("/admin/storage", headers=ADMIN)).json()["data"]
        assert {(d["tenant"], d["responses"], d["response_bytes"]) for d in every} == {
            ("acme", 2, sizes["acme"]), ("globex", 1, sizes["globex"])}
        own = (await client.get("/v1/storage", headers=bearer(acme))).json()["data"]
        assert [(d["tenant"], d["response_bytes"]) for d in own] == [("acme", sizes["acme"])]
        refused = await client.get("/v1/storage?tenant=globex", headers=bearer(acme))
        assert refused.status_code == 403
        assert (await client.get("/admin/storage", headers=bearer(acme))).status_code == 403
