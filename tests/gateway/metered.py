"""Helpers for metering tests: a metered gateway around a fake engine, keys, a live server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.http.state import GatewayState
from gateway.metering.service import Metering
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import MeteringSettings, Settings
from tests.conftest import ADMIN_KEY, make_settings

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def metered_settings(database_url: str, redis_url: str | None = None,
                     **overrides: Any) -> Settings:
    metering = MeteringSettings(database_url=database_url, redis_url=redis_url,
                                instance_id="test-instance")
    return make_settings(metering=metering, **overrides)


def metered_state(engine: FakeEngine, settings: Settings) -> GatewayState:
    registry = ModelRegistry([ServedModel(engine.model_name, engine, CharRenderer())])
    return build_state(settings, registry, metered=True)


def metering_of(state: GatewayState) -> Metering:
    assert state.metering is not None
    return state.metering


@contextlib.asynccontextmanager
async def metered_client(
    engine: FakeEngine, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayState]]:
    """An in-process client (no lifespan: metering is started here)."""
    state = metered_state(engine, settings)
    await metering_of(state).start()
    app = create_app(state, manage_engines=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, state
    finally:
        await metering_of(state).stop()


async def create_key(client: httpx.AsyncClient, tenant: str, **limits: Any) -> dict[str, Any]:
    response = await client.post("/admin/keys", json={"tenant": tenant, **limits},
                                 headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {key['key']}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    state: GatewayState


@contextlib.asynccontextmanager
async def on_loopback(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn (lifespan on) on a free loopback port; yields its URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def served(engine: FakeEngine, settings: Settings) -> AsyncIterator[RunningServer]:
    """The metered app on a real socket (uvicorn, lifespan on), for real disconnects."""
    state = metered_state(engine, settings)
    async with on_loopback(create_app(state, manage_engines=False)) as base_url:
        yield RunningServer(base_url, state)
