"""Fan-out counts: a request holds one parallel slot per engine sequence it starts (``n``
x prompts), on the in-process and the Redis limiter, and ``admit`` checks the limits
before planning without taking anything."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from engine.fake import FakeEngine
from gateway.errors import BudgetExceededError, RateLimitError
from gateway.limits.quota import Charge, Claim, Demand, Quota
from tests.conftest import MODEL
from tests.gateway.limits import test_limiters
from tests.gateway.limits.test_limiters import NOW, REDIS, MakeLimiter, Seed, key, tenant
from tests.gateway.metered import bearer, create_key, metered_client, metered_settings
from tests.gateway.serving.offload.doubles import until

make_limiter = test_limiters.make_limiter  # the same fixture: in-process and Redis limiters


def demand(*claims: Claim, tokens: int = 1, cost: int = 0, slots: int = 1) -> Demand:
    return Demand(uuid.uuid4().hex, "acme", Charge(tokens, cost), claims, slots)


async def test_parallel_when_a_request_starts_three_sequences_then_it_holds_three_slots(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(parallel=4)
    wide = await limiter.reserve(demand(claim, slots=3), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(claim, slots=2), NOW)
    assert refused.value.code == "parallel_requests_exceeded"
    assert "this request holds 2: n x prompts" in refused.value.message
    narrow = await limiter.reserve(demand(claim), NOW)  # 3 + 1 fit in 4
    await limiter.settle(wide, 1, 0)  # frees all three
    await limiter.reserve(demand(claim, slots=3), NOW)
    await limiter.settle(narrow, 1, 0)


async def test_parallel_when_the_tenant_is_stricter_then_its_slots_count_the_fan_out(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    await limiter.reserve(demand(key(parallel=10), tenant(parallel=5), slots=4), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(key(parallel=10), tenant(parallel=5), slots=2), NOW)
    assert "this tenant's limit is 5 in parallel" in refused.value.message


async def test_admit_when_limits_have_room_then_it_takes_nothing(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(Quota(rpm=1, tpm=10), parallel=1)
    for _ in range(3):
        await limiter.admit(demand(claim, tokens=10), NOW)
    await limiter.reserve(demand(claim, tokens=10), NOW)  # the one request RPM allows


@pytest.mark.parametrize(("quota", "parallel", "code"), [
    (Quota(rpm=1), None, "rate_limit_exceeded"),
    (Quota(tpm=10), None, "rate_limit_exceeded"),
    (Quota(budget_usd=Decimal("0.00000001")), None, "insufficient_quota"),  # 10 nano
    (Quota(), 1, "parallel_requests_exceeded"),
])
async def test_admit_when_a_limit_is_reached_then_the_429_reserve_would_give(
    make_limiter: MakeLimiter, quota: Quota, parallel: int | None, code: str,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(quota, parallel)
    await limiter.reserve(demand(claim, tokens=10, cost=10), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit(demand(claim, tokens=1, cost=1), NOW + 1)
    assert refused.value.code == code
    with pytest.raises(RateLimitError):  # admit's answer is reserve's
        await limiter.reserve(demand(claim, tokens=1, cost=1), NOW + 1)


async def test_admit_when_a_budget_was_never_seeded_then_reserve_decides(
    make_limiter: MakeLimiter,
) -> None:
    seed = Seed(nano=100)  # the ledger says the budget is spent
    limiter = make_limiter(seed)
    claim = key(Quota(budget_usd=Decimal("0.0000001")))  # 100 nano
    await limiter.admit(demand(claim, cost=1), NOW)  # no ledger query before planning
    assert seed.calls == []
    with pytest.raises(BudgetExceededError):
        await limiter.reserve(demand(claim, cost=1), NOW)


def completion(n: int = 1, prompts: int = 1, **extra: Any) -> dict[str, Any]:
    prompt: str | list[str] = "Hi" if prompts == 1 else ["Hi"] * prompts
    return {"model": MODEL, "prompt": prompt, "max_tokens": 8, "n": n, "temperature": 0,
            **extra}


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
async def test_key_parallel_when_fan_out_alone_exceeds_it_then_400_naming_n_or_prompt(
    database_url: str, redis: bool,
) -> None:
    settings = metered_settings(database_url, REDIS if redis else None)
    async with metered_client(FakeEngine(MODEL), settings) as (client, _):
        auth = bearer(await create_key(client, "acme", max_parallel_requests=4))
        too_wide = await client.post("/v1/completions", json=completion(n=5), headers=auth)
        many = await client.post("/v1/completions", json=completion(prompts=5), headers=auth)
        both = await client.post("/v1/completions", json=completion(n=3, prompts=2),
                                 headers=auth)
        fits = await client.post("/v1/completions", json=completion(n=2, prompts=2),
                                 headers=auth)
    for response, param in ((too_wide, "n"), (many, "prompt"), (both, "n")):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, "parallel_requests_exceed_limit")
        assert "limit of 4 in parallel" in error["message"]
    assert fits.status_code == 200 and len(fits.json()["choices"]) == 4


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
async def test_key_parallel_when_a_wide_request_runs_then_it_holds_its_sequences_until_done(
    database_url: str, redis: bool,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 40, token_delay_s=0.05)
    settings = metered_settings(database_url, REDIS if redis else None)
    async with metered_client(engine, settings) as (client, _):
        auth = bearer(await create_key(client, "acme", max_parallel_requests=4))
        wide = asyncio.create_task(client.post(
            "/v1/completions", json=completion(n=2, prompts=2, max_tokens=40), headers=auth))
        await until(lambda: engine.stats().running == 4)  # reserved and dispatched
        refused = await client.post("/v1/completions", json=completion(), headers=auth)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "parallel_requests_exceeded"
        assert (await wide).status_code == 200
        after = await client.post("/v1/completions", json=completion(), headers=auth)
        assert after.status_code == 200
