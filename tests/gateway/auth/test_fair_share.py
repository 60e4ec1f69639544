"""A tenant's and a key's fair share (weight, priority) through the admin API, and what a
request gets from them: the key's values over its tenant's, a priority header capped at
the ceiling, the band reaching the engine as vLLM's priority."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from engine.fake import FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from gateway.auth.fair_share import Share, with_share
from gateway.serving.accounting import Principal
from tests.conftest import MODEL
from tests.gateway.metered import (
    ADMIN,
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
)


@dataclass
class Recording(FakeEngine):
    priorities: list[int] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.priorities.append(request.priority)
        async for out in super().generate(request):
            yield out


def test_with_share_when_the_key_sets_one_then_it_wins_over_the_tenant_and_defaults_fill() -> (
        None):
    principal = Principal("k", "acme")
    both = with_share(principal, Share(weight=2.0), Share(weight=3.0, priority=4))
    assert (both.weight, both.priority) == (2.0, 4)
    neither = with_share(principal, Share(), Share())
    assert (neither.weight, neither.priority) == (1.0, 0)
    with pytest.raises(ValueError):
        Share(weight=0.0)
    with pytest.raises(ValueError):
        Share(priority=10)


async def test_admin_when_weight_and_priority_are_set_then_shown_patched_and_cleared(
        database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        made = await client.post("/admin/tenants", headers=ADMIN,
                                 json={"name": "acme", "weight": 3, "priority": 2})
        assert made.status_code == 201, made.text
        assert (made.json()["weight"], made.json()["priority"]) == (3.0, 2)
        patched = await client.patch("/admin/tenants/acme", headers=ADMIN,
                                     json={"weight": None})
        assert (patched.json()["weight"], patched.json()["priority"]) == (None, 2)
        key = await create_key(client, "acme", priority=5, weight=0.5)
        assert (key["weight"], key["priority"]) == (0.5, 5)
        key_patched = await client.patch(f"/admin/keys/{key['id']}", headers=ADMIN,
                                         json={"priority": 1})
        assert (key_patched.json()["weight"], key_patched.json()["priority"]) == (0.5, 1)
        for bad in ({"weight": 0}, {"priority": 10}, {"priority": -1}):
            refused = await client.patch("/admin/tenants/acme", headers=ADMIN, json=bad)
            assert refused.status_code == 400, bad


async def test_request_when_key_and_tenant_set_a_share_then_band_and_weight_follow(
        database_url: str) -> None:
    engine = Recording(MODEL, reply="ok")
    async with metered_client(engine, metered_settings(database_url)) as (client, state):
        await client.post("/admin/tenants", headers=ADMIN,
                          json={"name": "acme", "weight": 3, "priority": 2})
        tenant_key = await create_key(client, "acme")
        own_key = await create_key(client, "acme", priority=5, weight=0.5)
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        for key, header in ((tenant_key, None), (own_key, None), (own_key, "1"),
                            (own_key, "9")):
            headers = bearer(key) | ({} if header is None else {"x-llmgw-priority": header})
            answered = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert answered.status_code == 200, answered.text
        assert engine.priorities == [-2, -5, -1, -5]  # tenant's, key's, asked less, capped
        store = metering_of(state).keys
        records = [await store.verify(k["key"]) for k in (tenant_key, own_key)]
        principals = [await store.principal(r) for r in records if r is not None]
        assert [p.weight for p in principals] == [3.0, 0.5]
