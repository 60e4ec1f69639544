"""The planning pool's slots: bounded, shared fairly between tenants, waits bounded."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import RateLimitError, ServiceUnavailableError
from gateway.serving.offload.slots import FairSlots


async def test_slots_when_all_taken_then_the_next_waits_until_one_is_given_back() -> None:
    slots = FairSlots(total=2, per_tenant=1, max_waiting=8)
    first, second = await slots.acquire("a", 5), await slots.acquire("b", 5)
    third = asyncio.create_task(slots.acquire("c", 5))
    await asyncio.sleep(0.05)
    assert not third.done() and slots.in_use == 2
    first.release()
    lease = await asyncio.wait_for(third, 5)
    assert slots.in_use == 2 and lease.tenant == "c"
    second.release()
    lease.release()
    lease.release()  # idempotent: the slot is given back once
    assert slots.in_use == 0


async def test_tenant_when_its_share_is_taken_then_another_tenant_still_gets_a_slot() -> None:
    slots = FairSlots(total=3, per_tenant=2, max_waiting=8)
    held = [await slots.acquire("greedy", 5) for _ in range(2)]
    waiting = asyncio.create_task(slots.acquire("greedy", 5))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # its own share is full, though a slot is free
    other = await asyncio.wait_for(slots.acquire("polite", 5), 1)
    held[0].release()
    (await asyncio.wait_for(waiting, 5)).release()
    for lease in (held[1], other):
        lease.release()
    assert slots.in_use == 0


async def test_tenant_when_its_share_stays_busy_then_429_naming_the_share() -> None:
    slots = FairSlots(total=2, per_tenant=1, max_waiting=8)
    held = await slots.acquire("a", 5)
    with pytest.raises(RateLimitError) as refused:
        await slots.acquire("a", 0.05)
    assert refused.value.code == "planning_share_exceeded"
    assert refused.value.retry_after == 1
    held.release()
    (await slots.acquire("a", 1)).release()  # nothing left behind by the refused wait


async def test_pool_when_saturated_past_the_wait_then_503_and_the_share_is_returned() -> None:
    slots = FairSlots(total=2, per_tenant=1, max_waiting=8)
    held = [await slots.acquire("a", 5), await slots.acquire("b", 5)]
    with pytest.raises(ServiceUnavailableError) as refused:
        await slots.acquire("c", 0.05)
    assert refused.value.code == "planning_busy" and refused.value.status_code == 503
    for lease in held:
        lease.release()
    leases = [await slots.acquire("c", 1), await slots.acquire("a", 1)]
    assert slots.in_use == 2
    for lease in leases:
        lease.release()


async def test_waiting_when_a_tenant_queues_past_its_cap_then_refused_at_once() -> None:
    slots = FairSlots(total=2, per_tenant=1, max_waiting=2)
    held = await slots.acquire("a", 5)
    queued = [asyncio.create_task(slots.acquire("a", 5)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(RateLimitError) as refused:
        await slots.acquire("a", 5)  # no wait at all: the answer is immediate
    assert "2 waiting" in refused.value.message
    (await slots.acquire("b", 1)).release()  # other tenants are not affected
    held.release()
    for task in queued:
        (await asyncio.wait_for(task, 5)).release()


async def test_waiter_when_cancelled_then_its_place_is_given_up() -> None:
    slots = FairSlots(total=1, per_tenant=1, max_waiting=8)
    held = await slots.acquire("a", 5)
    waiter = asyncio.create_task(slots.acquire("b", 5))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    (await asyncio.wait_for(slots.acquire("c", 1), 1)).release()
    assert slots.in_use == 0


def test_slots_when_a_share_exceeds_the_pool_then_refused() -> None:
    with pytest.raises(ValueError):
        FairSlots(total=1, per_tenant=2, max_waiting=0)
