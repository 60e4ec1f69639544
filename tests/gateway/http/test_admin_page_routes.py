"""``/dashboard/admin`` (an open page, vendored assets) and ``/admin/ledger`` (admin only)."""

from __future__ import annotations

from pathlib import Path

import httpx

from engine.fake import FakeEngine
from tests.conftest import MODEL
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings


async def test_admin_page_when_opened_without_a_key_then_served_with_local_assets_only(
    fake_client: httpx.AsyncClient,
) -> None:
    page = await fake_client.get("/dashboard/admin", headers={"authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="key-form"' in page.text and 'id="tenants-table"' in page.text
    assert "https://" not in page.text and "http://" not in page.text  # nothing from a CDN
    for name, kind in (("admin.js", "text/javascript"), ("admin_spend.js", "text/javascript"),
                       ("admin.css", "text/css")):
        asset = await fake_client.get(f"/dashboard/assets/{name}", headers={"authorization": ""})
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    for name in ("admin.js", "admin_spend.js"):  # every value is written with textContent
        assert "innerHTML" not in (await fake_client.get(f"/dashboard/assets/{name}")).text


async def test_ledger_when_admin_then_newest_rows_first_and_a_key_is_refused(
    tmp_path: Path,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path))) as (
            client, _):
        key = await create_key(client, "acme")
        ids = []
        for max_tokens in (2, 3):
            done = await client.post("/v1/completions", headers=bearer(key),
                                     json={"model": MODEL, "prompt": "Hi",
                                           "max_tokens": max_tokens})
            ids.append(done.headers["x-request-id"])
        rows = (await client.get("/admin/ledger", headers=ADMIN)).json()["data"]
        assert [r["id"] for r in rows] == ids[::-1]
        assert (rows[0]["tenant"], rows[0]["key_id"], rows[0]["completion_tokens"],
                rows[0]["status"]) == ("acme", key["id"], 3, "length")
        one = (await client.get("/admin/ledger", params={"limit": 1, "key": key["id"]},
                                headers=ADMIN)).json()["data"]
        assert [r["id"] for r in one] == [ids[1]]
        assert (await client.get("/admin/ledger", headers=bearer(key))).status_code == 403
        assert (await client.get("/admin/ledger", params={"limit": 0},
                                 headers=ADMIN)).status_code == 400
