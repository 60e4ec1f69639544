"""RedisGuard's deadline: Redis that never answers fails at it; a loop that is itself behind
(a saturated gateway) does not make a prompt Redis look down."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.limits.redis_guard import (
    MAX_CONNECTIONS,
    STRETCH,
    RedisGuard,
    RedisUnavailable,
    connect,
)
from tests.gateway.limits.test_limiters import REDIS

TIMEOUT_S = 0.1  # the guard's deadline is three of these


async def test_guard_when_redis_never_answers_on_a_punctual_loop_then_unavailable_at_the_deadline(
) -> None:
    guard = RedisGuard(TIMEOUT_S)
    never = asyncio.Event()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await guard.call(never.wait)
    took = time.monotonic() - started
    assert guard.deadline_s <= took < STRETCH * guard.deadline_s, took
    assert guard.cooling_down


async def test_guard_when_the_loop_is_blocked_past_the_deadline_then_redis_answer_is_taken(
) -> None:
    guard = RedisGuard(TIMEOUT_S)
    loop = asyncio.get_running_loop()

    async def answer() -> str:
        await asyncio.sleep(guard.deadline_s + 0.05)  # Redis answers just after the deadline
        return "ok"

    # The gateway's own work holds the loop from before the deadline until after the answer
    # came: the deadline's wake-up comes late, and the answer is read on the next turn.
    loop.call_later(guard.deadline_s - 0.05, time.sleep, 0.3)
    assert await guard.call(answer) == "ok"
    assert not guard.cooling_down


async def test_guard_when_its_caller_is_cancelled_then_the_redis_call_is_cancelled() -> None:
    guard = RedisGuard(TIMEOUT_S)
    entered, never = asyncio.Event(), asyncio.Event()
    cancelled = asyncio.Event()

    async def waits() -> None:
        entered.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.create_task(guard.call(waits))
    await entered.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(cancelled.wait(), 1.0)
    assert not guard.cooling_down  # the caller left; Redis did nothing wrong


async def test_client_when_300_calls_at_once_then_all_answered_on_a_bounded_pool() -> None:
    # redis-py's own pool refuses past 100 connections (MaxConnectionsError): a saturated
    # gateway's 256 concurrent requests turned into limiter_unavailable 503s.
    redis = connect(REDIS, 0.5, bounded_by_guard=True)
    guard = RedisGuard(0.5)
    try:
        answers = await asyncio.gather(*[guard.call(redis.ping) for _ in range(300)])
        assert answers == [True] * 300
        assert not guard.cooling_down
        assert redis.connection_pool.max_connections == MAX_CONNECTIONS
    finally:
        await redis.aclose()
