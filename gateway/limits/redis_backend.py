"""Limits shared by every replica: counters in Redis, checked and taken by one Lua script.

The script reads every counter of every claim (the key's, its tenant's), refuses if any
limit would break, and otherwise takes all of them: Redis runs it atomically, so
concurrent replicas can never both take the last slot, and the stricter of the key's
and the tenant's limits wins. A budget counter that does not exist yet is seeded from
the ledger (the script asks for the seed, then the caller retries with it). Requests in
flight are a sorted set per subject, scored by when their lease ends, so a replica that
dies without settling frees its slots after the lease. A request holds one member per
engine sequence it starts (its id, then ``<id>#1``, ``<id>#2``...), so ``n`` x prompts
sequences take that many slots. ``admit`` runs the same checks read-only, before planning.

Every counter of one request shares the tenant's hash tag: one slot in Redis Cluster.

Redis down, blackholed or slow: each call is bounded (``RedisGuard``: connect and read
timeouts, a deadline, then a short cool-down answering at once) and fails with a 503
``limiter_unavailable`` and ``Retry-After``, never a hang or a 500.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import LimiterUnavailableError
from gateway.limits.quota import Claim, Demand, Hold, SpendSeed, Windows, windows_of
from gateway.limits.redis_guard import RedisGuard, RedisUnavailable, connect
from gateway.limits.refusal import Limit, refusal

# One claim's checks, shared by RESERVE and ADMIT: ``a`` and ``k`` are the claim's first
# ARGV and KEYS index; ``running(key)`` counts the requests it has in flight.
_CHECKS = """
local function refused(a, k, tokens, cost, slots, running)
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local budget, parallel = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if rpm >= 0 and tonumber(redis.call('GET', KEYS[k + 1]) or '0') + 1 > rpm then return 1 end
  if tpm >= 0 and tonumber(redis.call('GET', KEYS[k + 2]) or '0') + tokens > tpm then
    return 2
  end
  if budget >= 0 and tonumber(redis.call('GET', KEYS[k + 3]) or '0') + cost > budget then
    return 3
  end
  if parallel >= 0 and running(KEYS[k + 4]) + slots > parallel then return 5 end
  return 0
end
"""

_RESERVE = _CHECKS + """
local n, tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local minute_ttl, now, lease_ends = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lease_ttl, request_id, slots = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local function running(key)  -- leases past their end are removed first
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end
for i = 0, n - 1 do
  local a, k = 10 + 6 * i, 4 * i
  if tonumber(ARGV[a + 2]) >= 0 and redis.call('EXISTS', KEYS[k + 3]) == 0 then
    if tonumber(ARGV[a + 5]) < 0 then return {4, i} end
    redis.call('SET', KEYS[k + 3], ARGV[a + 5], 'EX', ARGV[a + 4])
  end
end
for i = 0, n - 1 do
  local code = refused(10 + 6 * i, 4 * i, tokens, cost, slots, running)
  if code > 0 then return {code, i} end
end
for i = 0, n - 1 do
  local a, k = 10 + 6 * i, 4 * i
  redis.call('INCR', KEYS[k + 1])
  redis.call('EXPIRE', KEYS[k + 1], minute_ttl)
  redis.call('INCRBY', KEYS[k + 2], tokens)
  redis.call('EXPIRE', KEYS[k + 2], minute_ttl)
  if tonumber(ARGV[a + 2]) >= 0 then redis.call('INCRBY', KEYS[k + 3], cost) end
  if tonumber(ARGV[a + 3]) >= 0 then
    redis.call('ZADD', KEYS[k + 4], lease_ends, request_id)
    for s = 1, slots - 1 do redis.call('ZADD', KEYS[k + 4], lease_ends, request_id .. '#' .. s) end
    redis.call('EXPIRE', KEYS[k + 4], lease_ttl)
  end
end
return {0, 0}
"""

_SETTLE = """
local n, unused, extra, request_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local slots = tonumber(ARGV[5])
for i = 0, n - 1 do
  local k = 3 * i
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then redis.call('DECRBY', KEYS[k + 1], unused) end
  if ARGV[6 + i] == '1' and redis.call('EXISTS', KEYS[k + 2]) == 1 then
    redis.call('INCRBY', KEYS[k + 2], extra)
  end
  redis.call('ZREM', KEYS[k + 3], request_id)
  for s = 1, slots - 1 do redis.call('ZREM', KEYS[k + 3], request_id .. '#' .. s) end
end
return 0
"""

# RESERVE's checks, read-only: a budget counter not seeded yet counts as unspent, and
# leases past their end are not counted (RESERVE removes them).
_ADMIT = _CHECKS + """
local n, tokens, cost, now, slots = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[4], tonumber(ARGV[5])
local function running(key)
  return redis.call('ZCOUNT', key, '(' .. now, '+inf')
end
for i = 0, n - 1 do
  local code = refused(6 + 4 * i, 4 * i, tokens, cost, slots, running)
  if code > 0 then return {code, i} end
end
return {0, 0}
"""

_REFUSED: dict[int, Limit] = {1: "rpm", 2: "tpm", 3: "budget", 5: "parallel"}
_NEEDS_SEED = 4
_MINUTE_TTL_S = 120
_SEED_ATTEMPTS = 3


def _keys(claim: Claim, windows: Windows, tag: str) -> list[str]:
    base = f"{tag}{claim.subject.id}"
    return [f"{base}:rpm:{windows.minute}", f"{base}:tpm:{windows.minute}",
            f"{base}:spend:{windows.period_id}:r{claim.revision}", f"{base}:running"]


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisLimiter:
    def __init__(self, url: str, seed: SpendSeed, prefix: str = "llmgw:",
                 lease_s: float = 3600.0, timeout_s: float = 0.5) -> None:
        self._redis: Any = connect(url, timeout_s, bounded_by_guard=True)
        self._guard = RedisGuard(timeout_s)
        self._seed = seed
        self._prefix = prefix
        self._lease_s = lease_s
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._admit = self._redis.register_script(_ADMIT)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._guard.call(lambda: script(keys=keys, args=args))
        except RedisUnavailable as exc:
            retry = max(1, math.ceil(self._guard.cooldown_s))
            raise LimiterUnavailableError(
                "Rate limits cannot be checked right now; retry shortly.",
                retry_after=retry) from exc

    def _tag(self, demand: Demand) -> str:
        return f"{self._prefix}{{{demand.group}}}:"

    def _all_keys(self, demand: Demand, windows: tuple[Windows, ...]) -> list[str]:
        tag = self._tag(demand)
        return [key for claim, window in zip(demand.claims, windows, strict=True)
                for key in _keys(claim, window, tag)]

    async def admit(self, demand: Demand, now: float) -> None:
        windows = windows_of(demand, now)
        charge = demand.charge
        args: list[str | int] = [len(demand.claims), charge.tokens, charge.cost_nano,
                                 repr(now), demand.slots]
        for claim in demand.claims:
            args += [_limit(claim.quota.rpm), _limit(claim.quota.tpm),
                     _limit(claim.quota.budget_nano), _limit(claim.max_parallel)]
        answer = await self._run(self._admit, self._all_keys(demand, windows), args)
        code, index = (int(v) for v in answer)
        if code in _REFUSED:
            raise refusal(_REFUSED[code], demand.claims[index], charge, windows[index], now,
                          demand.slots)

    async def reserve(self, demand: Demand, now: float) -> Hold:
        windows = windows_of(demand, now)
        keys = self._all_keys(demand, windows)
        seeds = [-1] * len(demand.claims)
        for _ in range(_SEED_ATTEMPTS):
            answer = await self._run(self._reserve, keys, self._args(demand, windows, seeds, now))
            code, index = (int(v) for v in answer)
            if code != _NEEDS_SEED:
                break
            seeds = await self._seeds(demand, windows)
        if code in _REFUSED:
            claim = demand.claims[index]
            raise refusal(_REFUSED[code], claim, demand.charge, windows[index], now,
                          demand.slots)
        if code != 0:
            raise RuntimeError(f"the limiter script answered {code}")
        return Hold(demand, windows)

    def _args(self, demand: Demand, windows: tuple[Windows, ...], seeds: list[int],
              now: float) -> list[str | int]:
        charge = demand.charge
        args: list[str | int] = [len(demand.claims), charge.tokens, charge.cost_nano,
                              _MINUTE_TTL_S, repr(now), repr(now + self._lease_s),
                              math.ceil(self._lease_s) + 60, demand.request_id, demand.slots]
        for claim, window, seed in zip(demand.claims, windows, seeds, strict=True):
            quota = claim.quota
            args += [_limit(quota.rpm), _limit(quota.tpm), _limit(quota.budget_nano),
                     _limit(claim.max_parallel), int(window.period_ends - now) + 86400, seed]
        return args

    async def _seeds(self, demand: Demand, windows: tuple[Windows, ...]) -> list[int]:
        return [await self._seed(claim.subject, window.period_starts)
                if claim.quota.budget_usd is not None else -1
                for claim, window in zip(demand.claims, windows, strict=True)]

    async def settle(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        demand = hold.demand
        tag = self._tag(demand)
        keys = [key for claim, window in zip(demand.claims, hold.windows, strict=True)
                for key in _keys(claim, window, tag)[1:]]
        budgets = ["1" if claim.quota.budget_usd is not None else "0" for claim in demand.claims]
        await self._run(self._settle, keys, [
            len(demand.claims), demand.charge.tokens - tokens,
            cost_nano - demand.charge.cost_nano, demand.request_id, demand.slots, *budgets])

    async def close(self) -> None:
        await self._redis.aclose()
