"""Numbers an admin body may carry are bounded by what the ledger's columns hold: a value
past them is a 400 naming the field, never a 500 (schemathesis found ``budget_usd`` at
9.22 million overflowing SQLite's INTEGER, and any rpm past 2**63 did the same)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from engine.fake import FakeEngine
from gateway.auth.allowance import Allowance
from gateway.limits.quota import MAX_COUNT, Quota
from tests.conftest import MODEL
from tests.gateway.metered import ADMIN, metered_client, metered_settings

TOO_LARGE: list[dict[str, Any]] = [
    {"budget_usd": "9223372.036854775808"}, {"budget_usd": 1e300}, {"rpm": 2**63},
    {"tpm": MAX_COUNT + 1}, {"max_parallel_requests": 10**30},
]


async def test_admin_bodies_when_numbers_exceed_the_ledger_columns_then_400_naming_them(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        made = await client.post("/admin/keys", json={"tenant": "acme"}, headers=ADMIN)
        key_id = made.json()["id"]
        answers = []
        for fields in TOO_LARGE:
            (name,) = fields
            for method, path, body in (
                ("POST", "/admin/keys", {"tenant": "acme", **fields}),
                ("PATCH", f"/admin/keys/{key_id}", fields),
                ("POST", "/admin/tenants", {"name": "globex", **fields}),
                ("PATCH", "/admin/tenants/acme", fields),
            ):
                response = await client.request(method, path, json=body, headers=ADMIN)
                answers.append((method, path, name, response.status_code,
                                response.json()["error"]["param"]))
        largest = await client.post("/admin/keys", headers=ADMIN, json={
            "tenant": "acme", "budget_usd": "1000000", "rpm": MAX_COUNT, "tpm": MAX_COUNT,
            "max_parallel_requests": MAX_COUNT})
    assert all(status == 400 and param == name
               for _, _, name, status, param in answers), answers
    assert largest.status_code == 201, largest.text


@pytest.mark.parametrize("build", [
    lambda: Quota(rpm=MAX_COUNT + 1), lambda: Quota(tpm=2**63),
    lambda: Quota(budget_usd=Decimal("1000000.000000000001")),
    lambda: Allowance(max_parallel=MAX_COUNT + 1),
])
def test_terms_when_past_the_ledger_columns_then_refused_without_http(build: Any) -> None:
    with pytest.raises(ValueError):  # the CLI builds terms without the HTTP bodies
        build()
