"""The fair queue on its own: admission up to capacity, order by weight over tokens and by
priority band, deadlines on an injected clock, and waiters that leave."""

from __future__ import annotations

import asyncio

import pytest

from gateway.limits.fair_queue import (
    ClientGoneError,
    FairQueue,
    QueueClaim,
    QueueTimeoutError,
    Seat,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _queue_up(queue: FairQueue, claims: list[QueueClaim]) -> list[asyncio.Task[Seat]]:
    tasks = [asyncio.create_task(queue.acquire(c)) for c in claims]
    await _settle()
    return tasks


async def _serve_in_order(queue: FairQueue, holder: Seat,
                          tasks: list[asyncio.Task[Seat]]) -> list[str]:
    """Release one seat at a time (the engine finishing a request) and note who gets it."""
    served: list[int] = []
    current = holder
    for _ in tasks:
        current.release()
        await _settle()
        admitted = [i for i, t in enumerate(tasks) if t.done() and i not in served]
        assert len(admitted) == 1
        served.append(admitted[0])
        current = tasks[admitted[0]].result()
    current.release()
    return [tasks[i].result().claim.flow for i in served]


async def test_acquire_when_seats_are_free_then_admitted_at_once_up_to_capacity() -> None:
    queue = FairQueue(2, 10.0)
    first = await queue.acquire(QueueClaim("a", 10))
    second = await queue.acquire(QueueClaim("a", 10))
    third = asyncio.create_task(queue.acquire(QueueClaim("b", 10)))
    await _settle()
    assert queue.in_use == 2 and queue.depth == 1 and not third.done()
    first.release()
    await _settle()
    assert third.done() and queue.depth == 0 and queue.in_use == 2
    second.release()
    third.result().release()
    assert queue.in_use == 0


async def test_order_when_a_heavy_tenant_queued_first_then_a_light_one_is_not_behind_it() -> None:
    queue = FairQueue(1, 10.0)
    holder = await queue.acquire(QueueClaim("heavy", 100))
    tasks = await _queue_up(queue, [QueueClaim("heavy", 100) for _ in range(4)]
                            + [QueueClaim("light", 100)])
    order = await _serve_in_order(queue, holder, tasks)
    assert order.index("light") <= 1  # not behind all four heavy ones


async def test_order_when_weights_are_3_to_1_then_tokens_are_served_3_to_1() -> None:
    queue = FairQueue(1, 10.0)
    holder = await queue.acquire(QueueClaim("x", 1))
    claims = [QueueClaim("a", 100, weight=3.0) for _ in range(12)]
    claims += [QueueClaim("b", 100, weight=1.0) for _ in range(12)]
    tasks = await _queue_up(queue, claims)
    order = await _serve_in_order(queue, holder, tasks)
    first_eight = order[:8]
    assert first_eight.count("a") == 6 and first_eight.count("b") == 2


async def test_order_when_costs_differ_then_shares_are_in_tokens_not_requests() -> None:
    queue = FairQueue(1, 10.0)
    holder = await queue.acquire(QueueClaim("x", 1))
    claims = [QueueClaim("long", 400) for _ in range(3)]
    claims += [QueueClaim("short", 100) for _ in range(8)]
    order = await _serve_in_order(queue, holder, await _queue_up(queue, claims))
    assert order[:5].count("short") == 4  # four short ones per long one


async def test_order_when_a_higher_band_waits_then_it_goes_first_whatever_its_tenant_used() -> (
        None):
    queue = FairQueue(1, 10.0)
    holder = await queue.acquire(QueueClaim("x", 1))
    claims = [QueueClaim("batch", 10, band=-1), QueueClaim("online", 10),
              QueueClaim("urgent", 10_000, band=5), QueueClaim("online", 10)]
    order = await _serve_in_order(queue, holder, await _queue_up(queue, claims))
    assert order == ["urgent", "online", "online", "batch"]


async def test_release_when_a_request_used_less_than_it_claimed_then_its_tenant_gets_credit() -> (
        None):
    queue = FairQueue(1, 10.0)
    (await queue.acquire(QueueClaim("b", 500))).release()  # used all it asked for
    (await queue.acquire(QueueClaim("a", 1000))).release(used_tokens=10)  # asked 1000, used 10
    holder = await queue.acquire(QueueClaim("x", 1))
    claims = [QueueClaim("b", 100), QueueClaim("a", 100)]
    order = await _serve_in_order(queue, holder, await _queue_up(queue, claims))
    assert order == ["a", "b"]  # charged 1000, a would have waited behind b
    assert queue.stats.flows["a"].served_tokens == 110


async def test_acquire_when_the_deadline_passes_then_429_with_retry_after_and_it_leaves() -> None:
    clock = Clock()
    queue = FairQueue(1, 30.0, clock=clock)
    holder = await queue.acquire(QueueClaim("a", 10))
    waiting = asyncio.create_task(queue.acquire(QueueClaim("b", 10), timeout_s=5.0))
    await _settle()
    clock.now += 6.0
    with pytest.raises(QueueTimeoutError) as raised:
        await waiting
    assert raised.value.status_code == 429 and raised.value.code == "queue_timeout"
    assert raised.value.headers()["retry-after"] == "5"
    assert queue.depth == 0 and queue.stats.flows["b"].timeouts == 1
    holder.release()
    assert queue.in_use == 0


async def test_acquire_when_the_client_disconnects_then_it_leaves_and_frees_nothing_else() -> None:
    queue = FairQueue(1, 30.0)
    holder = await queue.acquire(QueueClaim("a", 10))
    gone = asyncio.Event()

    async def disconnected() -> bool:
        return gone.is_set()

    waiting = asyncio.create_task(queue.acquire(QueueClaim("b", 10), disconnected=disconnected))
    behind = asyncio.create_task(queue.acquire(QueueClaim("c", 10)))
    await _settle()
    gone.set()
    with pytest.raises(ClientGoneError):
        await asyncio.wait_for(waiting, 5.0)
    assert queue.depth == 1 and queue.stats.flows["b"].abandoned == 1
    holder.release()
    await _settle()
    assert behind.done() and queue.in_use == 1


async def test_acquire_when_cancelled_while_queued_then_its_place_is_given_up() -> None:
    queue = FairQueue(1, 30.0)
    holder = await queue.acquire(QueueClaim("a", 10))
    waiting = asyncio.create_task(queue.acquire(QueueClaim("b", 10)))
    await _settle()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert queue.depth == 0 and queue._finish.get("b", 0.0) == 0.0  # charged nothing
    holder.release()
    assert queue.in_use == 0


async def test_acquire_when_the_engine_says_it_queues_then_nothing_more_is_admitted() -> None:
    engine_waiting = [0]
    queue = FairQueue(8, 30.0, busy=lambda: engine_waiting[0] > 0)
    first = await queue.acquire(QueueClaim("a", 10))
    engine_waiting[0] = 3
    held = asyncio.create_task(queue.acquire(QueueClaim("b", 10)))
    await _settle()
    assert not held.done()
    engine_waiting[0] = 0
    queue.retry()
    await _settle()
    assert held.done()
    first.release()
    held.result().release()


async def test_acquire_when_a_claim_is_wider_than_capacity_then_it_runs_alone() -> None:
    queue = FairQueue(2, 30.0)
    wide = await queue.acquire(QueueClaim("a", 10, seats=4))
    assert queue.in_use == 4
    wide.release()
    assert queue.in_use == 0


def test_claim_when_weight_is_not_positive_then_refused() -> None:
    with pytest.raises(ValueError):
        QueueClaim("a", 10, weight=0)


async def test_reserve_when_one_tenant_saturates_then_the_reserved_seats_stay_free() -> None:
    queue = FairQueue(8, 10.0, reserve=0.25)  # 2 of 8 seats held back
    held = [await queue.acquire(QueueClaim("a", 10)) for _ in range(6)]
    more = asyncio.create_task(queue.acquire(QueueClaim("a", 10)))
    await _settle()
    assert queue.reserved == 2 and queue.in_use == 6 and not more.done()
    held[0].release()
    await _settle()
    assert more.done() and queue.in_use == 6  # a's next one took the freed normal seat
    more.result().release()


async def test_reserve_when_a_light_tenant_arrives_then_it_starts_past_the_heavy_ones_waiting(
) -> None:
    queue = FairQueue(8, 10.0, reserve=0.25)
    for _ in range(6):
        await queue.acquire(QueueClaim("a", 300))
    heavy = await _queue_up(queue, [QueueClaim("a", 300) for _ in range(20)])
    light = asyncio.create_task(queue.acquire(QueueClaim("b", 20)))
    await _settle()
    assert light.done() and not any(t.done() for t in heavy)  # no seat ended: a reserved one
    assert queue.in_use == 7 and queue.depth == 20
    for task in heavy:
        task.cancel()
    await asyncio.gather(*heavy, return_exceptions=True)


async def test_reserve_when_the_light_tenant_reaches_its_share_then_it_waits_like_the_rest(
) -> None:
    queue = FairQueue(4, 10.0, reserve=0.5)  # 2 of 4 held back; b's share of 4 is 2
    for _ in range(2):
        await queue.acquire(QueueClaim("a", 10))
    a_waits = asyncio.create_task(queue.acquire(QueueClaim("a", 10)))
    b = [asyncio.create_task(queue.acquire(QueueClaim("b", 10))) for _ in range(3)]
    await _settle()
    assert [t.done() for t in b] == [True, True, False] and not a_waits.done()
    assert queue.in_use == 4
    for task in (a_waits, b[2]):
        task.cancel()
    await asyncio.gather(a_waits, b[2], return_exceptions=True)


async def test_reserve_when_weights_differ_then_the_share_follows_the_weight() -> None:
    queue = FairQueue(10, 10.0, reserve=0.5)  # 5 of 10 held back
    for _ in range(5):
        await queue.acquire(QueueClaim("a", 10, weight=1.0))
    # b weighs 4: its share of 10 seats beside a is 8, so it fills all 5 reserved seats
    b = [asyncio.create_task(queue.acquire(QueueClaim("b", 10, weight=4.0))) for _ in range(6)]
    await _settle()
    assert sum(t.done() for t in b) == 5 and queue.in_use == 10
    b[5].cancel()
    await asyncio.gather(b[5], return_exceptions=True)


def test_reserve_when_not_a_fraction_then_refused() -> None:
    with pytest.raises(ValueError, match="reserve"):
        FairQueue(8, 10.0, reserve=1.0)
    assert FairQueue(32, 10.0, reserve=0.03).reserved == 1  # the default on 32 seats
    assert FairQueue(16, 10.0, reserve=0.03).reserved == 0  # a small engine: none
    assert FairQueue(256, 10.0, reserve=0.03).reserved == 8
    assert FairQueue(1, 10.0, reserve=0.9).reserved == 0  # never the engine's only seat
