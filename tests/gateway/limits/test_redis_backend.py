"""Two gateway processes sharing one budget through Redis (and one ledger database): a
key's, and a tenant's spent by two of its keys."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, REPO, free_port
from tests.gateway.limits.test_limiters import REDIS, _clear
from tests.gateway.metered import ADMIN

WORST = (2 * Decimal("0.10") + 8 * Decimal("0.40")) / 10**6  # prompt "Hi", max_tokens 8


@contextmanager
def fake_gateways(count: int, env: dict[str, str], log_dir: Path) -> Iterator[list[str]]:
    """``count`` fake-engine gateway processes; yields their base URLs once all are up."""
    procs, urls = [], []
    try:
        for i in range(count):
            port = free_port()
            log = (log_dir / f"gateway-{i}.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.gateway.fake_gateway", "--port", str(port)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **env, "LLMGW_METERING__INSTANCE_ID": f"replica-{i}"}))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        for i, (proc, url) in enumerate(zip(procs, urls, strict=True)):
            while True:
                assert proc.poll() is None, (log_dir / f"gateway-{i}.log").read_text()
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "fake gateway did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
async def test_two_gateways_when_64_race_for_a_shared_budget_that_fits_10_then_10_pass(
    database_url: str, tmp_path: Path,
) -> None:
    env = {"LLMGW_METERING__DATABASE_URL": database_url, "LLMGW_METERING__REDIS_URL": REDIS}
    with fake_gateways(2, env, tmp_path) as urls:
        async with httpx.AsyncClient(timeout=60) as client:
            created = await client.post(urls[0] + "/admin/keys", headers=ADMIN,
                                        json={"tenant": "acme", "budget_usd": str(WORST * 10)})
            key = created.json()
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 8}
            auth = {"authorization": f"Bearer {key['key']}"}
            try:
                responses = await asyncio.gather(*[
                    client.post(urls[i % 2] + "/v1/completions", json=body, headers=auth)
                    for i in range(64)])
                codes = sorted(r.status_code for r in responses)
                assert codes == [200] * 10 + [429] * 54
                served_by = {i % 2 for i, r in enumerate(responses) if r.status_code == 200}
                refused_by = {i % 2 for i, r in enumerate(responses) if r.status_code == 429}
                assert served_by | refused_by == {0, 1}
                spend = await client.get(urls[1] + "/admin/spend", headers=ADMIN,
                                         params={"key": key["id"]})
                totals = spend.json()["totals"]
                assert totals["requests"] == 10
                assert Decimal(totals["cost_usd"]) == WORST * 10
            finally:
                await _clear(f"llmgw:{{acme}}:{key['id']}:")


@pytest.mark.slow
async def test_two_gateways_when_two_keys_race_for_their_tenants_budget_then_10_pass(
    database_url: str, tmp_path: Path,
) -> None:
    env = {"LLMGW_METERING__DATABASE_URL": database_url, "LLMGW_METERING__REDIS_URL": REDIS}
    tenant = f"team-{uuid.uuid4().hex[:10]}"
    with fake_gateways(2, env, tmp_path) as urls:
        async with httpx.AsyncClient(timeout=60) as client:
            made = await client.post(urls[1] + "/admin/tenants", headers=ADMIN,
                                     json={"name": tenant, "budget_usd": str(WORST * 10),
                                           "max_parallel_requests": 50})
            assert made.status_code == 201, made.text
            keys = [(await client.post(urls[0] + "/admin/keys", headers=ADMIN,
                                       json={"tenant": tenant, "budget_usd": "1"})).json()
                    for _ in range(2)]
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 8}
            try:
                responses = await asyncio.gather(*[
                    client.post(urls[i % 2] + "/v1/completions", json=body, headers={
                        "authorization": f"Bearer {keys[(i // 2) % 2]['key']}"})
                    for i in range(64)])
                codes = sorted(r.status_code for r in responses)
                assert codes == [200] * 10 + [429] * 54
                refused = [r.json()["error"] for r in responses if r.status_code == 429]
                assert {e["code"] for e in refused} == {"insufficient_quota"}
                spend = await client.get(urls[0] + "/admin/spend", headers=ADMIN,
                                         params={"tenant": tenant, "group_by": "key"})
                by_key = spend.json()["data"]
                assert sum(line["requests"] for line in by_key) == 10
                assert sum(Decimal(line["cost_usd"]) for line in by_key) == WORST * 10
            finally:
                await _clear(f"llmgw:{{{tenant}}}:")
