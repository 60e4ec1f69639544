"""RPM, TPM and budget holds, the same on the in-process and the Redis limiter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import pytest

from gateway.errors import BudgetExceededError, RateLimitError
from gateway.limits.memory import InProcessLimiter
from gateway.limits.quota import Charge, Limiter, Quota
from gateway.limits.redis_backend import RedisLimiter

REDIS = "redis://127.0.0.1:6379/0"
NOW = 1_700_000_050.0  # 10 s into a minute, 22:14 UTC


class Seed:
    def __init__(self, nano: int = 0) -> None:
        self.nano = nano
        self.calls = 0

    async def __call__(self, subject: str, since: datetime) -> int:
        self.calls += 1
        return self.nano


async def _clear(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    prefix = f"llmgw-test-{uuid.uuid4().hex}:"
    made: list[Limiter] = []

    def make(seed: Seed) -> Limiter:
        limiter: Limiter = (InProcessLimiter(seed) if request.param == "memory"
                            else RedisLimiter(REDIS, seed, prefix=prefix))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()
    await _clear(prefix)


async def test_rpm_when_exceeded_then_refused_until_next_minute(make_limiter: object) -> None:
    limiter = make_limiter(Seed())  # type: ignore[operator]
    quota = Quota(rpm=2)
    for _ in range(2):
        await limiter.reserve("k", quota, Charge(1, 0), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve("k", quota, Charge(1, 0), NOW)
    assert refused.value.retry_after == 50
    await limiter.reserve("k", quota, Charge(1, 0), NOW + 50)


async def test_tpm_when_settled_below_hold_then_unused_tokens_come_back(
    make_limiter: object,
) -> None:
    limiter = make_limiter(Seed())  # type: ignore[operator]
    quota = Quota(tpm=100)
    hold = await limiter.reserve("k", quota, Charge(80, 0), NOW)
    with pytest.raises(RateLimitError):
        await limiter.reserve("k", quota, Charge(30, 0), NOW)
    await limiter.settle(hold, 20, 0)
    await limiter.reserve("k", quota, Charge(80, 0), NOW)


async def test_budget_when_spend_seeded_from_ledger_then_counts_toward_limit(
    make_limiter: object,
) -> None:
    seed = Seed(nano=9_000)
    limiter = make_limiter(seed)  # type: ignore[operator]
    quota = Quota(budget_usd=Decimal("0.00001"), budget_period="day")  # 10_000 nano
    await limiter.reserve("k", quota, Charge(1, 1_000), NOW)
    with pytest.raises(BudgetExceededError) as refused:
        await limiter.reserve("k", quota, Charge(1, 1), NOW)
    assert refused.value.retry_after is not None and refused.value.retry_after > 3600
    assert seed.calls == 1


async def test_budget_when_64_reserve_at_once_then_exactly_what_fits(
    make_limiter: object,
) -> None:
    limiter = make_limiter(Seed())  # type: ignore[operator]
    quota = Quota(budget_usd=Decimal("0.000010"))
    results = await asyncio.gather(
        *[limiter.reserve("k", quota, Charge(1, 1_000), NOW) for _ in range(64)],
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert all(isinstance(r, BudgetExceededError) for r in results
               if isinstance(r, BaseException))


async def test_subjects_when_different_then_limits_independent(make_limiter: object) -> None:
    limiter = make_limiter(Seed())  # type: ignore[operator]
    quota = Quota(rpm=1)
    await limiter.reserve("a", quota, Charge(1, 0), NOW)
    await limiter.reserve("b", quota, Charge(1, 0), NOW)
    with pytest.raises(RateLimitError):
        await limiter.reserve("a", quota, Charge(1, 0), NOW)
