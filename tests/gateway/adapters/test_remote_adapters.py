"""Adapters on a model served by stock vLLM replicas (stand-ins with runtime LoRA updating,
tests/engine/vllm_fake.py): registration loads the adapter on a replica, so a folder the
replicas cannot read is the registration's 400; a request names it as its ``model`` there,
and it is billed at its price as on the embedded engine. The real replicas:
tests/e2e/test_remote_replicas.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from engine.discovery import ReplicaSource
from engine.fake import FakeEngine
from engine.remote import ReplicaAccess
from engine.routing import ReplicaRouter, RoutingPolicy
from tests.conftest import MODEL
from tests.engine.vllm_fake import FakeVllm, fake_vllms
from tests.gateway.adapters.test_adapter_registry import (
    ADAPTER,
    REPLY,
    Gateway,
    adapter_folder,
    chat,
    ledger_rows,
    lora_settings,
    registration,
)
from tests.gateway.metered import ADMIN

KEY = "replica-key"


@asynccontextmanager
async def remote_gateway(fake: FakeVllm, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A metered gateway whose model is served by one stand-in replica."""
    async with fake_vllms(fake) as [replica]:
        router = ReplicaRouter(MODEL, 2048, ReplicaSource((replica.url,)), RoutingPolicy(),
                               access=ReplicaAccess(KEY, max_loras=2))
        await router.start()
        try:
            async with Gateway(lora_settings(database_url), router) as client:
                yield client
        finally:
            await router.stop()


async def test_adapter_on_replicas_when_registered_then_loaded_there_and_billed(
    database_url: str, tmp_path: Path,
) -> None:
    fake = FakeVllm(FakeEngine(MODEL, reply=REPLY), api_key=KEY)
    async with remote_gateway(fake, database_url) as client:
        missing = await client.post("/admin/adapters", headers=ADMIN,
                                    json=registration(tmp_path / "not-there"))
        created = await client.post("/admin/adapters", headers=ADMIN,
                                    json=registration(adapter_folder(tmp_path)))
        response = await client.post("/v1/chat/completions", json=chat(ADAPTER), headers=ADMIN)
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "path"
    assert "No adapter found" in missing.json()["error"]["message"]
    assert created.status_code == 201, created.text
    assert response.status_code == 200, response.text
    # the refused folder, then the registration's load; the request found it loaded
    assert fake.lora_calls == [("load", ADAPTER), ("load", ADAPTER)]
    assert fake.bodies[-1]["model"] == ADAPTER
    message = response.json()["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("2 and 2 make 4.", "4.")
    row = next(r for r in await ledger_rows(database_url) if r.model == ADAPTER)
    assert row.adapter == ADAPTER


async def test_adapter_on_replicas_when_path_relative_then_refused(
    database_url: str, tmp_path: Path,
) -> None:
    fake = FakeVllm(FakeEngine(MODEL), api_key=KEY)
    async with remote_gateway(fake, database_url) as client:
        refused = await client.post("/admin/adapters", headers=ADMIN,
                                    json=registration(Path("adapters/think")))
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "path"
    assert fake.lora_calls == []
