"""Virtual keys: shown once, stored hashed, checked in constant time, revocable."""

from __future__ import annotations

from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.auth import api_keys
from gateway.metering.tables import ApiKeyRow
from tests.conftest import MODEL
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings

BODY = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}


def test_token_when_parsed_then_id_and_secret_and_garbage_rejected() -> None:
    issued = api_keys.issue()
    assert api_keys.parse(issued.token) == (issued.key_id, issued.secret)
    for bad in ("sk-gw-", "sk-gw-abc.def", "sk-other-0123456789ab.x", issued.token[:18]):
        assert api_keys.parse(bad) is None
    assert api_keys.matches(issued.secret, issued.secret_hash)
    assert not api_keys.matches(issued.secret + "x", issued.secret_hash)


async def test_key_when_created_then_only_its_hash_is_stored(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, state):
        key = await create_key(client, "acme", rpm=5)
        assert state.metering is not None
        async with state.metering.database.connect() as connection:
            rows = (await connection.execute(select(ApiKeyRow))).all()
        assert len(rows) == 1
        stored = " ".join(str(value) for value in rows[0])
        _, secret = api_keys.parse(key["key"]) or ("", "")
        assert secret not in stored and key["key"] not in stored
        listed = (await client.get("/admin/keys", headers=ADMIN)).json()["data"]
        assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]


async def test_key_when_valid_wrong_or_revoked_then_200_401_401(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        ok = await client.post("/v1/completions", json=BODY, headers=bearer(key))
        assert ok.status_code == 200
        wrong = {"authorization": f"Bearer {key['key'][:-2]}xx"}
        denied = await client.post("/v1/completions", json=BODY, headers=wrong)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        revoked = await client.delete(f"/admin/keys/{key['id']}", headers=ADMIN)
        assert revoked.json() == {"id": key["id"], "revoked": True}
        after = await client.post("/v1/completions", json=BODY, headers=bearer(key))
        assert after.status_code == 401
        again = await client.delete(f"/admin/keys/{key['id']}", headers=ADMIN)
        assert again.status_code == 404


async def test_admin_routes_when_called_with_tenant_key_then_403(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                             ("GET", "/admin/spend")):
            response = await client.request(method, path, headers=bearer(key),
                                            json={"tenant": "acme"})
            assert response.status_code == 403, path
