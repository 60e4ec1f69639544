"""RPM, TPM, budget and parallel holds, the same on the in-process and the Redis limiter.

A request is held against its key's claim and its tenant's at once: all or nothing, so
the stricter limit wins and a refusal by one leaves the other's counters untouched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

import pytest

from gateway.errors import BudgetExceededError, RateLimitError
from gateway.limits.memory import InProcessLimiter
from gateway.limits.quota import Charge, Claim, Demand, Hold, Limiter, Quota, Subject
from gateway.limits.redis_backend import RedisLimiter

REDIS = "redis://127.0.0.1:6379/0"
NOW = 1_700_000_050.0  # 10 s into a minute, 22:14 UTC
KEY, TENANT = Subject("key", "k"), Subject("tenant", "acme")


class Seed:
    def __init__(self, nano: int = 0, **by_subject: int) -> None:
        self.nano = nano
        self.by_subject = by_subject
        self.calls: list[str] = []

    async def __call__(self, subject: Subject, since: datetime) -> int:
        self.calls.append(subject.id)
        return self.by_subject.get(subject.scope, self.nano)


async def _clear(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


MakeLimiter = Callable[..., Limiter]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    prefix = f"llmgw-test-{uuid.uuid4().hex}:"
    made: list[Limiter] = []

    def make(seed: Seed, lease_s: float = 3600.0) -> Limiter:
        limiter: Limiter = (InProcessLimiter(seed, lease_s) if request.param == "memory"
                            else RedisLimiter(REDIS, seed, prefix=prefix, lease_s=lease_s))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()
    await _clear(prefix)


def demand(*claims: Claim, tokens: int = 1, cost: int = 0, request_id: str = "") -> Demand:
    return Demand(request_id or uuid.uuid4().hex, "acme", Charge(tokens, cost), claims)


def key(quota: Quota = Quota(), parallel: int | None = None, revision: int = 0) -> Claim:
    return Claim(KEY, quota, parallel, revision)


def tenant(quota: Quota = Quota(), parallel: int | None = None) -> Claim:
    return Claim(TENANT, quota, parallel)


async def test_rpm_when_exceeded_then_refused_until_next_minute(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Seed())
    claim = key(Quota(rpm=2))
    for _ in range(2):
        await limiter.reserve(demand(claim), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(claim), NOW)
    assert refused.value.retry_after == 50
    assert "this key's limit of 2 requests per minute" in refused.value.message
    await limiter.reserve(demand(claim), NOW + 50)


async def test_tpm_when_settled_below_hold_then_unused_tokens_come_back(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(Quota(tpm=100))
    hold = await limiter.reserve(demand(claim, tokens=80), NOW)
    with pytest.raises(RateLimitError):
        await limiter.reserve(demand(claim, tokens=30), NOW)
    await limiter.settle(hold, 20, 0)
    await limiter.reserve(demand(claim, tokens=80), NOW)


async def test_budget_when_spend_seeded_from_ledger_then_counts_toward_limit(
    make_limiter: MakeLimiter,
) -> None:
    seed = Seed(nano=9_000)
    limiter = make_limiter(seed)
    claim = key(Quota(budget_usd=Decimal("0.00001"), budget_period="day"))  # 10_000 nano
    await limiter.reserve(demand(claim, cost=1_000), NOW)
    with pytest.raises(BudgetExceededError) as refused:
        await limiter.reserve(demand(claim, cost=1), NOW)
    assert refused.value.retry_after is not None and refused.value.retry_after > 3600
    assert seed.calls == ["k"]


async def test_budget_when_64_reserve_at_once_then_exactly_what_fits(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(Quota(budget_usd=Decimal("0.000010")))
    results = await asyncio.gather(
        *[limiter.reserve(demand(claim, cost=1_000), NOW) for _ in range(64)],
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert all(isinstance(r, BudgetExceededError) for r in results
               if isinstance(r, BaseException))


async def test_subjects_when_different_then_limits_independent(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Seed())
    quota = Quota(rpm=1)
    await limiter.reserve(demand(Claim(Subject("key", "a"), quota)), NOW)
    await limiter.reserve(demand(Claim(Subject("key", "b"), quota)), NOW)
    with pytest.raises(RateLimitError):
        await limiter.reserve(demand(Claim(Subject("key", "a"), quota)), NOW)


async def test_key_and_tenant_when_tenant_is_stricter_then_tenant_refuses_and_says_so(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    generous, strict = key(Quota(rpm=100)), tenant(Quota(rpm=2))
    other_key = Claim(Subject("key", "k2"), Quota(rpm=100))
    await limiter.reserve(demand(generous, strict), NOW)
    await limiter.reserve(demand(other_key, strict), NOW)  # the tenant's two, from two keys
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(generous, strict), NOW)
    assert "this tenant's limit of 2 requests per minute" in refused.value.message
    assert "acme" not in refused.value.message


async def test_key_and_tenant_when_key_refuses_then_tenant_counters_untouched(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    strict_key, team = key(Quota(tpm=10)), tenant(Quota(tpm=100))
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(strict_key, team, tokens=50), NOW)
    assert refused.value.code == "tokens_exceed_limit" and "this key's" in refused.value.message
    for _ in range(10):  # the refused 50 tokens were never taken from the tenant
        await limiter.reserve(demand(Claim(Subject("key", "x")), team, tokens=10), NOW)


async def test_tenant_budget_when_seeded_then_tenant_spend_counts_not_the_keys(
    make_limiter: MakeLimiter,
) -> None:
    seed = Seed(key=0, tenant=9_500)
    limiter = make_limiter(seed)
    team = tenant(Quota(budget_usd=Decimal("0.00001")))  # 10_000 nano
    own = key(Quota(budget_usd=Decimal("1")))
    await limiter.reserve(demand(own, team, cost=500), NOW)
    with pytest.raises(BudgetExceededError) as refused:
        await limiter.reserve(demand(own, team, cost=1), NOW)
    assert "This tenant's monthly budget" in refused.value.message
    assert sorted(seed.calls) == ["k", "tenant:acme"]


async def test_parallel_when_full_then_refused_until_a_request_settles(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claim = key(parallel=2)
    first = await limiter.reserve(demand(claim), NOW)
    await limiter.reserve(demand(claim), NOW)
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(claim), NOW)
    assert refused.value.code == "parallel_requests_exceeded"
    assert refused.value.retry_after == 1
    await limiter.settle(first, 1, 0)
    await limiter.reserve(demand(claim), NOW)


async def test_parallel_when_tenant_allows_fewer_than_key_then_tenant_wins(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    held: list[Hold] = []
    for name in ("a", "b"):
        held.append(await limiter.reserve(
            demand(Claim(Subject("key", name), max_parallel=5), tenant(parallel=2)), NOW))
    with pytest.raises(RateLimitError) as refused:
        await limiter.reserve(demand(Claim(Subject("key", "c"), max_parallel=5),
                                     tenant(parallel=2)), NOW)
    assert "this tenant's limit is 2 in parallel" in refused.value.message
    await limiter.settle(held[0], 1, 0)
    await limiter.reserve(demand(Claim(Subject("key", "c")), tenant(parallel=2)), NOW)


async def test_parallel_when_never_settled_then_slot_frees_after_the_lease(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed(), lease_s=30)
    claim = key(parallel=1)
    await limiter.reserve(demand(claim), NOW)  # a replica died before settling it
    with pytest.raises(RateLimitError):
        await limiter.reserve(demand(claim), NOW + 29)
    await limiter.reserve(demand(claim), NOW + 31)


async def test_parallel_when_64_race_for_3_slots_then_exactly_3_pass(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    claims = (key(parallel=10), tenant(parallel=3))
    results = await asyncio.gather(*[limiter.reserve(demand(*claims), NOW) for _ in range(64)],
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 3


async def test_budget_when_revision_changes_then_counter_is_seeded_again(
    make_limiter: MakeLimiter,
) -> None:
    seed = Seed(nano=0)
    limiter = make_limiter(seed)
    budget = Quota(budget_usd=Decimal("0.00001"))
    await limiter.reserve(demand(key(budget, revision=1), cost=9_000), NOW)
    seed.nano = 2_000  # what the ledger holds by now
    await limiter.reserve(demand(key(budget, revision=2), cost=8_000), NOW)
    assert seed.calls == ["k", "k"]
    with pytest.raises(BudgetExceededError):
        await limiter.reserve(demand(key(budget, revision=2), cost=1), NOW)


async def test_settle_when_claim_had_no_budget_then_budget_counter_left_alone(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(Seed())
    budget = Quota(budget_usd=Decimal("0.00001"))
    await limiter.reserve(demand(key(budget), cost=10_000), NOW)  # the whole budget
    hold = await limiter.reserve(demand(key(Quota(rpm=100)), cost=5_000), NOW)
    await limiter.settle(hold, 1, 0)  # must not hand 5_000 back to the budget counter
    with pytest.raises(BudgetExceededError):
        await limiter.reserve(demand(key(budget), cost=1), NOW)


async def test_end_user_when_over_its_rpm_or_budget_then_refused_alone_in_the_same_check(
    make_limiter: MakeLimiter,
) -> None:
    seed = Seed(user=4_000)  # what the end user spent this period, from the ledger
    limiter = make_limiter(seed)
    budget = Quota(rpm=2, budget_usd=Decimal("0.000005"))  # 5_000 nano
    alice = Claim(Subject("user", "alice", owner="acme"), budget)
    bob = Claim(Subject("user", "bob", owner="acme"), budget)
    shared = key(Quota(rpm=10))
    await limiter.reserve(demand(shared, tenant(), alice, cost=500), NOW)
    with pytest.raises(BudgetExceededError) as spent:
        await limiter.reserve(demand(shared, tenant(), alice, cost=600), NOW)
    assert "This end user's monthly budget" in spent.value.message
    await limiter.reserve(demand(shared, tenant(), alice, cost=400), NOW)
    with pytest.raises(RateLimitError) as too_fast:
        await limiter.reserve(demand(shared, tenant(), alice), NOW)
    assert "this end user's limit of 2 requests per minute" in too_fast.value.message
    await limiter.reserve(demand(shared, tenant(), bob), NOW)
    for _ in range(7):  # the refused ones took nothing from the key: 3 taken, 7 left
        await limiter.reserve(demand(shared), NOW)
    with pytest.raises(RateLimitError):
        await limiter.reserve(demand(shared), NOW)
    assert sorted(seed.calls) == ["user:acme:alice", "user:acme:bob"]
