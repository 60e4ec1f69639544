"""Limits shared by every replica: counters in Redis, checked and taken by one Lua script.

The script reads the three counters, refuses if any limit would break, and otherwise
increments all of them: Redis runs it atomically, so concurrent replicas can never
both take the last slot. A budget counter that does not exist yet is seeded from the
ledger (the script asks for the seed, then the caller retries with it).
"""

from __future__ import annotations

from typing import Any

from gateway.limits.quota import Charge, Hold, Quota, SpendSeed, Windows
from gateway.limits.refusal import Limit, refusal

_RESERVE = """
local rpm_limit, tpm_limit, budget_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local minute_ttl, period_ttl, seed = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if budget_limit >= 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  if seed < 0 then return 4 end
  redis.call('SET', KEYS[3], seed, 'EX', period_ttl)
end
if rpm_limit >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') + 1 > rpm_limit then
  return 1
end
if tpm_limit >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') + tokens > tpm_limit then
  return 2
end
if budget_limit >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + cost > budget_limit then
  return 3
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], minute_ttl)
redis.call('INCRBY', KEYS[2], tokens)
redis.call('EXPIRE', KEYS[2], minute_ttl)
if budget_limit >= 0 then redis.call('INCRBY', KEYS[3], cost) end
return 0
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], ARGV[2]) end
return 0
"""

_REFUSED: dict[int, Limit] = {1: "rpm", 2: "tpm", 3: "budget"}
_NEEDS_SEED = 4


def _keys(subject: str, windows: Windows, prefix: str) -> list[str]:
    tag = f"{prefix}{{{subject}}}"  # one hash slot per subject (Redis Cluster)
    return [f"{tag}:rpm:{windows.minute}", f"{tag}:tpm:{windows.minute}",
            f"{tag}:spend:{windows.period_id}"]


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisLimiter:
    def __init__(self, url: str, seed: SpendSeed, prefix: str = "llmgw:") -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url)
        self._seed = seed
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    async def reserve(self, subject: str, quota: Quota, charge: Charge, now: float) -> Hold:
        windows = Windows.at(now, quota.budget_period)
        keys = _keys(subject, windows, self._prefix)
        args = [_limit(quota.rpm), _limit(quota.tpm), _limit(quota.budget_nano),
                charge.tokens, charge.cost_nano, 120, int(windows.period_ends - now) + 86400]
        result = int(await self._reserve(keys=keys, args=[*args, -1]))
        if result == _NEEDS_SEED:
            seed = await self._seed(subject, windows.period_starts)
            result = int(await self._reserve(keys=keys, args=[*args, seed]))
        if result in _REFUSED:
            raise refusal(_REFUSED[result], quota, charge, windows, now)
        return Hold(subject, charge, windows)

    async def settle(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        keys = _keys(hold.subject, hold.windows, self._prefix)
        await self._settle(keys=keys[1:], args=[hold.charge.tokens - tokens,
                                                cost_nano - hold.charge.cost_nano])

    async def close(self) -> None:
        await self._redis.aclose()
