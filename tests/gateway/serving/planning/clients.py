"""The real app around a fake engine, with the limits a test sets, for planning's refusals
seen as a client sees them (a 400 in the OpenAI envelope naming the field)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings
from tests.gateway.http.test_openai_routes import assert_envelope

ASK = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 2, "messages": ASK, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 2, "prompt": "hi", **fields}


def client_of(engine: FakeEngine | None = None, **limits: Any) -> httpx.AsyncClient:
    settings = make_settings()
    settings = settings.model_copy(update={"limits": settings.limits.model_copy(update=limits)})
    app = create_app(fake_state(engine or FakeEngine(model_name=MODEL), settings),
                     manage_engines=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                             headers={"authorization": f"Bearer {ADMIN_KEY}",
                                      "content-type": "application/json"})


async def refused(body: dict[str, Any] | str, param: str, route: str = "/v1/chat/completions",
                  **limits: Any) -> dict[str, Any]:
    """POST ``body`` (a dict, or raw JSON text); assert a 400 envelope naming ``param``."""
    content = body if isinstance(body, str) else json.dumps(body)
    async with client_of(**limits) as client:
        return assert_envelope(await client.post(route, content=content), 400, param)


async def accepted(body: dict[str, Any], route: str = "/v1/chat/completions",
                   engine: FakeEngine | None = None, **limits: Any) -> dict[str, Any]:
    async with client_of(engine, **limits) as client:
        response = await client.post(route, content=json.dumps(body))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
