"""The fair queue on the real engine (the session gateway): every request passes through its
model's queue, whose capacity is the engine's max_num_seqs, and the tokens it counts as
served for a tenant are the engine's own counts that the usage reports."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.conftest import LiveGateway

TENANT = "fair-share-e2e"


def _metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name}{{{labels}}} missing"
    return float(found.group(1))


@pytest.mark.engine
@pytest.mark.slow
async def test_queue_when_a_weighted_tenant_chats_then_served_tokens_equal_its_usage(
    live_gateway: LiveGateway,
) -> None:
    admin = live_gateway.admin_headers()
    async with httpx.AsyncClient(base_url=live_gateway.base_url, timeout=300) as client:
        made = await client.post("/admin/tenants", headers=admin,
                                 json={"name": TENANT, "weight": 2, "priority": 1})
        assert made.status_code == 201, made.text
        key = (await client.post("/admin/keys", headers=admin,
                                 json={"tenant": TENANT})).json()["key"]
        body = {"model": live_gateway.model, "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": "Name three colours."}]}
        replies = await asyncio.gather(*(client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}",
                                                        "x-llmgw-priority": "0"})
            for _ in range(3)))
        assert [r.status_code for r in replies] == [200, 200, 200]
        used = sum(r.json()["usage"]["total_tokens"] for r in replies)
        metrics = (await client.get("/metrics", headers=admin)).text
    model = f'model="{live_gateway.model}"'
    assert _metric(metrics, "llmgw_queue_served_tokens_total", f'{model},tenant="{TENANT}"') == (
        used)
    assert _metric(metrics, "llmgw_queue_wait_seconds_count", f'{model},tenant="{TENANT}"') == 3
    assert _metric(metrics, "llmgw_queue_capacity_seats", model) == 32  # the test profile's
