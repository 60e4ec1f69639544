"""Security of the HTTP surface with auth on: keys on every route, hashed keys at rest,
constant-time comparison, tenant isolation, no secrets or prompts in logs, CORS closed."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.auth import api_keys, key_store
from gateway.auth import bearer as bearer_module
from gateway.metering.tables import ApiKeyRow
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings

PROTECTED_PREFIXES = ("/v1", "/admin")


def _protected_routes() -> list[tuple[str, str]]:
    app = create_app(fake_state(FakeEngine(MODEL)), manage_engines=False)
    routes: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(PROTECTED_PREFIXES):
            routes.extend((method, route.path) for method in sorted(route.methods))
    return routes


def test_route_list_covers_openai_admin_keys_and_spend_routes() -> None:
    paths = {path for _, path in _protected_routes()}
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/spend",
            "/admin/keys", "/admin/spend", "/admin/engines"} <= paths


@pytest.mark.parametrize(("method", "path"), _protected_routes())
async def test_every_v1_and_admin_route_when_no_key_then_401(
    method: str, path: str, tmp_path: Path
) -> None:
    concrete = path.replace("{key_id}", "0123456789ab")
    async with metered_client(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path))) as (
        client, _):
        missing = await client.request(method, concrete, json={})
        wrong = await client.request(method, concrete, json={},
                                     headers={"authorization": "Bearer sk-gw-0123456789ab.x"})
    assert missing.status_code == 401, (method, path, missing.text)
    assert "API key" in missing.json()["error"]["message"]
    assert wrong.status_code == 401, (method, path, wrong.text)


async def test_key_when_created_then_only_its_sha256_is_stored(tmp_path: Path) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path))) as (
        client, state):
        key = await create_key(client, "acme")
        assert state.metering is not None
        sessions = async_sessionmaker(state.metering.database)
        async with sessions() as session:
            row = (await session.execute(select(ApiKeyRow))).scalar_one()
    token = key["key"]
    secret = token.partition(".")[2]
    assert row.id == key["id"]
    assert row.secret_hash == api_keys.hash_secret(secret)
    for column in (row.secret_hash, row.name or "", row.tenant):
        assert secret not in column and token not in column


def test_key_comparison_when_source_is_read_then_uses_hmac_compare_digest() -> None:
    # A check of the source, not a timing measurement: it proves which comparison is used.
    assert "hmac.compare_digest" in inspect.getsource(api_keys.matches)
    assert "hmac.compare_digest" in inspect.getsource(bearer_module.AdminKeyAuthenticator)
    verify = inspect.getsource(key_store.KeyStore.verify)
    # the hash is compared even for an unknown key id: no early exit leaks which ids exist
    assert "api_keys.matches" in verify and "hash_secret(\"\")" in verify


async def test_tenant_when_reading_other_tenants_spend_or_keys_then_refused(
    tmp_path: Path,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path))) as (
        client, _):
        acme, globex = await create_key(client, "acme"), await create_key(client, "globex")
        done = await client.post("/v1/completions", headers=bearer(globex),
                                 json={"model": MODEL, "prompt": "Hello", "max_tokens": 4})
        assert done.status_code == 200
        other = await client.get("/v1/spend", params={"tenant": "globex"}, headers=bearer(acme))
        own = await client.get("/v1/spend", headers=bearer(acme))
        by_key = await client.get("/v1/spend", params={"key": globex["id"]},
                                  headers=bearer(acme))
        keys = await client.get("/admin/keys", headers=bearer(acme))
        admin_spend = await client.get("/admin/spend", headers=bearer(acme))
        revoke = await client.delete(f"/admin/keys/{globex['id']}", headers=bearer(acme))
        still = await client.get("/admin/keys", params={"tenant": "globex"}, headers=ADMIN)
    assert other.status_code == 403
    assert own.status_code == 200 and own.json()["totals"]["requests"] == 0
    assert by_key.status_code == 200 and by_key.json()["totals"]["requests"] == 0
    assert keys.status_code == 403 and admin_spend.status_code == 403
    assert revoke.status_code == 403
    assert [k["id"] for k in still.json()["data"]] == [globex["id"]]


async def test_logs_by_default_hold_no_key_and_no_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = "zebra-quartz-prompt-7731"
    caplog.set_level(logging.DEBUG)
    async with metered_client(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path))) as (
        client, _):
        key = await create_key(client, "acme")
        ok = await client.post("/v1/chat/completions", headers=bearer(key), json={
            "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]})
        streamed = await client.post("/v1/completions", headers=bearer(key), json={
            "model": MODEL, "max_tokens": 8, "prompt": prompt, "stream": True})
        bad = await client.post("/v1/completions", headers=bearer(key), json={
            "model": MODEL, "max_tokens": -1, "prompt": prompt})
        wrong = await client.get("/v1/models",
                                 headers={"authorization": f"Bearer {key['key']}x"})
    assert (ok.status_code, streamed.status_code, bad.status_code, wrong.status_code) == (
        200, 200, 400, 401)
    assert any(r.getMessage() == "request finished" for r in caplog.records)
    text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    secret = key["key"].partition(".")[2]
    for forbidden in (prompt, key["key"], secret, ADMIN_KEY):
        assert forbidden not in text


def _cors_client(origins: list[str]) -> httpx.AsyncClient:
    app = create_app(fake_state(FakeEngine(MODEL), make_settings(cors_origins=origins)),
                     manage_engines=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


PREFLIGHT = {"access-control-request-method": "POST",
             "access-control-request-headers": "authorization,content-type"}


async def test_cors_by_default_then_preflight_gets_no_allow_origin() -> None:
    async with _cors_client([]) as client:
        response = await client.options("/v1/chat/completions",
                                        headers={"origin": "https://evil.example", **PREFLIGHT})
        plain = await client.get("/v1/models", headers={"origin": "https://evil.example", **ADMIN})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in plain.headers


async def test_cors_when_origin_configured_then_only_that_origin_allowed() -> None:
    async with _cors_client(["https://app.example"]) as client:
        allowed = await client.options("/v1/chat/completions",
                                       headers={"origin": "https://app.example", **PREFLIGHT})
        unknown = await client.options("/v1/chat/completions",
                                       headers={"origin": "https://evil.example", **PREFLIGHT})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in unknown.headers
