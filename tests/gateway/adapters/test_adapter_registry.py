"""LoRA adapters on the fake engine (SQLite and PostgreSQL): registered by /admin/adapters,
listed in /v1/models with their parent only for the tenants and keys allowed (others get a
404 as if absent), run on the base engine with the adapter attached, split by their own
reasoning parser, billed at their own Decimal price and named on the ledger row; kept in
the database across gateways; refused when the base model cannot serve them."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from engine.fake import CharRenderer, FakeEngine
from engine.protocol import Engine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.metering.pricing import to_pico
from gateway.metering.tables import LedgerRow
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import Settings
from tests.conftest import MODEL
from tests.gateway.metered import ADMIN, bearer, create_key, metered_settings
from tests.gateway.serving.test_reasoning import CharTokenizer

ADAPTER = "smollm2-135m-think"
REPLY = "<think>2 and 2 make 4.</think>4."
SPAN = len("<think>2 and 2 make 4.</think>")  # the fake engine: one token per character


class ThinkRenderer(CharRenderer):
    tokenizer = CharTokenizer()  # what vLLM's olmo3 parser reads


def lora_settings(database_url: str, max_loras: int = 2) -> Settings:
    settings = metered_settings(database_url)
    model = dataclasses.replace(settings.models[MODEL], max_loras=max_loras, max_lora_rank=8)
    return settings.model_copy(update={"models": {**settings.models, MODEL: model}})


def adapter_folder(tmp_path: Path, rank: int = 8) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return folder


class Gateway:
    """A metered app over one fake engine; ``restart`` builds a fresh one on the same database."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self.state: Any = None
        self.client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        registry = ModelRegistry([ServedModel(MODEL, self.engine, ThinkRenderer())])
        self.state = build_state(self.settings, registry, metered=True)
        app = create_app(self.state, manage_engines=False)
        self._context = app.router.lifespan_context(app)
        await self._context.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://gateway")
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.aclose()
        await self._context.__aexit__(None, None, None)


def registration(folder: Path, **extra: Any) -> dict[str, Any]:
    return {"name": ADAPTER, "base_model": MODEL, "path": str(folder),
            "price": {"prompt": "1.25", "completion": "7.5"}, "reasoning_parser": "olmo3",
            **extra}


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "2+2?"}],
            "temperature": 0, "max_tokens": 64}


async def test_adapter_when_registered_for_a_tenant_then_only_it_sees_uses_and_pays(
    database_url: str, tmp_path: Path,
) -> None:
    engine = FakeEngine(MODEL, reply=REPLY)
    async with Gateway(lora_settings(database_url), engine) as client:
        mine, other = await create_key(client, "acme"), await create_key(client, "globex")
        created = await client.post("/admin/adapters", headers=ADMIN,
                                    json=registration(adapter_folder(tmp_path), tenants=["acme"]))
        assert created.status_code == 201, created.text
        listed = (await client.get("/v1/models", headers=bearer(mine))).json()["data"]
        entry = next(m for m in listed if m["id"] == ADAPTER)
        assert (entry["parent"], entry["object"]) == (MODEL, "model")
        hidden = (await client.get("/v1/models", headers=bearer(other))).json()["data"]
        assert ADAPTER not in {m["id"] for m in hidden}
        refused = await client.post("/v1/chat/completions", json=chat(ADAPTER),
                                    headers=bearer(other))
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "model_not_found"
        response = await client.post("/v1/chat/completions", json=chat(ADAPTER),
                                     headers=bearer(mine))
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == ADAPTER
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("2 and 2 make 4.", "4.")
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == SPAN
    assert engine.adapters_used == [ADAPTER]
    row = next(r for r in await ledger_rows(database_url) if r.model == ADAPTER)
    usage = body["usage"]
    cost = (usage["prompt_tokens"] * Decimal("1.25")
            + usage["completion_tokens"] * Decimal("7.5")).scaleb(-6)
    assert (row.adapter, row.cost_pico, row.reasoning_tokens) == (ADAPTER, to_pico(cost), SPAN)


async def ledger_rows(database_url: str) -> list[Any]:
    from gateway.metering.database import create_database_engine

    engine = create_database_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(LedgerRow))).all())
    finally:
        await engine.dispose()


async def test_adapter_when_gateway_restarts_then_loaded_from_database_until_deleted(
    database_url: str, tmp_path: Path,
) -> None:
    settings = lora_settings(database_url)
    async with Gateway(settings, FakeEngine(MODEL, reply=REPLY)) as client:
        created = await client.post("/admin/adapters", headers=ADMIN,
                                    json=registration(adapter_folder(tmp_path)))
        assert created.status_code == 201, created.text
    engine = FakeEngine(MODEL, reply=REPLY)
    async with Gateway(settings, engine) as client:
        listed = (await client.get("/admin/adapters", headers=ADMIN)).json()["data"]
        assert [(a["id"], a["price"]) for a in listed] == [
            (ADAPTER, {"prompt": "1.25", "completion": "7.5"})]
        served = await client.post("/v1/chat/completions", json=chat(ADAPTER), headers=ADMIN)
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["message"]["reasoning_content"] == "2 and 2 make 4."
        assert (await client.delete(f"/admin/adapters/{ADAPTER}", headers=ADMIN)).is_success
        gone = await client.post("/v1/chat/completions", json=chat(ADAPTER), headers=ADMIN)
        assert gone.status_code == 404
    assert engine.adapters_used == [ADAPTER]
    async with Gateway(settings, FakeEngine(MODEL)) as client:
        assert (await client.get("/admin/adapters", headers=ADMIN)).json()["data"] == []


@pytest.mark.parametrize(("change", "max_loras", "status", "param"), [
    ({}, 0, 400, "base_model"),  # LoRA off on the base model
    ({"base_model": "no-such-model"}, 2, 400, "base_model"),
    ({"path": "relative/folder"}, 2, 400, "path"),
    ({"rank": 16}, 2, 400, "path"),  # above max_lora_rank 8
    ({"reasoning_parser": "no-such-parser"}, 2, 400, "reasoning_parser"),
    ({"name": MODEL}, 2, 409, "name"),
    ({"price": {"prompt": "-1"}}, 2, 400, None),
])
async def test_register_when_base_cannot_serve_it_then_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], max_loras: int, status: int, param: str | None,
) -> None:
    settings = lora_settings(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", max_loras)
    change = dict(change)
    folder = adapter_folder(tmp_path, change.pop("rank", 8))
    async with Gateway(settings, FakeEngine(MODEL)) as client:
        response = await client.post("/admin/adapters", headers=ADMIN,
                                     json=registration(folder, **change))
        assert response.status_code == status, response.text
        if param is not None:
            assert response.json()["error"]["param"] == param
        assert (await client.get("/admin/adapters", headers=ADMIN)).json()["data"] == []


async def test_register_when_caller_is_not_admin_then_refused(tmp_path: Path) -> None:
    settings = lora_settings(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    async with Gateway(settings, FakeEngine(MODEL)) as client:
        key = await create_key(client, "acme")
        response = await client.post("/admin/adapters", headers=bearer(key),
                                     json=registration(adapter_folder(tmp_path)))
        assert response.status_code == 403


def test_engine_config_when_model_holds_loras_then_vllm_gets_its_lora_flags() -> None:
    from engine.vllm_args import engine_arg_overrides

    lora = Settings(models={"m": {"max_loras": 2, "max_lora_rank": 8}})
    assert engine_arg_overrides(lora.engine_config("m").extra_args) == {
        "enable_lora": True, "max_loras": 2, "max_lora_rank": 8}
    assert Settings(models={"m": {}}).engine_config("m").extra_args == ()
