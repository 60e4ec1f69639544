"""Helpers for key-lifecycle and tenant tests: a metered gateway serving two models,
tenants with names of their own (Redis counters are shared between test runs)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.http.state import GatewayState
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import Settings
from tests.conftest import MODEL
from tests.gateway.metered import ADMIN, metering_of

OTHER_MODEL = "other-model"  # a second served model (no price: free)


def unique(prefix: str = "team") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rfc3339(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def body(model: str = MODEL, max_tokens: int = 4) -> dict[str, Any]:
    return {"model": model, "prompt": "Hi", "max_tokens": max_tokens}


@contextlib.asynccontextmanager
async def two_model_client(
    settings: Settings, engine: FakeEngine | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayState]]:
    """The metered app serving ``MODEL`` and ``OTHER_MODEL`` (no lifespan: metering is
    started here)."""
    first = engine or FakeEngine(MODEL)
    registry = ModelRegistry([ServedModel(MODEL, first, CharRenderer()),
                              ServedModel(OTHER_MODEL, FakeEngine(OTHER_MODEL), CharRenderer())])
    state = build_state(settings, registry, metered=True)
    await metering_of(state).start()
    transport = httpx.ASGITransport(app=create_app(state, manage_engines=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, state
    finally:
        await metering_of(state).stop()


async def create_tenant(client: httpx.AsyncClient, name: str, **terms: Any) -> dict[str, Any]:
    response = await client.post("/admin/tenants", json={"name": name, **terms}, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def patch_key(client: httpx.AsyncClient, key_id: str, **changes: Any) -> dict[str, Any]:
    response = await client.patch(f"/admin/keys/{key_id}", json=changes, headers=ADMIN)
    assert response.status_code == 200, response.text
    patched: dict[str, Any] = response.json()
    return patched


async def model_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(m["id"] for m in response.json()["data"])
