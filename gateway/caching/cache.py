"""The response cache's policy and its seams with serving and billing.

``decide`` says whether a request may be answered from the cache and may fill it (the
key's policy, the gateway default, ``Cache-Control``, repeatability). A hit is replayed
through the normal path and settled with ``response_cached`` (priced at the cache-hit
prices); a miss records the engine's outputs and stores them once the request finished
``ok`` or ``length``, after its settlement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from gateway.auth.key_store import KeyPrincipal
from gateway.caching.key import is_repeatable, response_key
from gateway.caching.recording import Recorder, Recording
from gateway.caching.store import MemoryStore, RedisStore, ResponseStore
from gateway.serving.accounting import Outcome, Principal, Settled, Ticket
from gateway.serving.plan import GenerationPlan
from gateway.settings import ResponseCacheSettings

Result = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True)
class CacheDecision:
    key: str
    read: bool  # may answer from the cache
    write: bool  # may store this request's answer

    def __post_init__(self) -> None:
        if not (self.read or self.write):
            raise ValueError("a decision that neither reads nor writes is no decision")


def _directives(cache_control: str | None) -> set[str]:
    return {part.strip().lower() for part in (cache_control or "").split(",") if part.strip()}


class _HitTicket:
    def __init__(self, inner: Ticket) -> None:
        self._inner = inner

    async def settle(self, outcome: Outcome) -> Settled:
        return await self._inner.settle(dataclasses.replace(outcome, response_cached=True))


class _FillTicket:
    def __init__(self, inner: Ticket, cache: ResponseCache, key: str, model: str,
                 recorder: Recorder) -> None:
        self._inner, self._cache, self._recorder = inner, cache, recorder
        self._key, self._model = key, model

    async def settle(self, outcome: Outcome) -> Settled:
        settled = await self._inner.settle(outcome)
        recording = self._recorder.recording()
        if outcome.status in ("ok", "length") and recording is not None:
            await self._cache.remember(self._key, recording, self._model)
        return settled


class ResponseCache:
    def __init__(self, settings: ResponseCacheSettings, store: ResponseStore | None,
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.store = store
        self._requests = Counter(
            "llmgw_response_cache_requests", "Repeatable requests by response-cache result.",
            ["model", "result"], registry=registry)
        self._stored = Counter("llmgw_response_cache_stored", "Responses stored.", ["model"],
                               registry=registry)

    @classmethod
    def from_settings(cls, settings: ResponseCacheSettings, redis_url: str | None,
                      registry: CollectorRegistry | None = None) -> ResponseCache:
        store: ResponseStore | None = None
        if settings.backend == "memory":
            store = MemoryStore(settings.max_bytes, settings.max_entry_bytes, settings.ttl_s)
        elif settings.backend == "redis":
            url = settings.redis_url or redis_url
            if url is None:
                raise ValueError("response_cache.backend redis needs a redis_url")
            store = RedisStore(url, settings.max_entry_bytes, settings.ttl_s,
                               settings.redis_timeout_s)
        return cls(settings, store, registry)

    def _enabled_for(self, principal: Principal) -> bool:
        policy = principal.response_cache if isinstance(principal, KeyPrincipal) else None
        return self.settings.enabled_by_default if policy is None else policy

    def decide(self, principal: Principal, plan: GenerationPlan,
               cache_control: str | None) -> CacheDecision | None:
        """``None``: this request neither reads nor fills the cache."""
        if self.store is None or not self._enabled_for(principal) or not is_repeatable(plan):
            return None
        directives = _directives(cache_control)
        if "no-store" in directives:
            return None
        return CacheDecision(response_key(principal.tenant, plan),
                             read="no-cache" not in directives, write=True)

    async def lookup(self, decision: CacheDecision | None, model: str) -> Recording | None:
        if decision is None or self.store is None:
            if self.store is not None:
                self._requests.labels(model, "bypass").inc()
            return None
        data = await self.store.get(decision.key) if decision.read else None
        recording = None if data is None else Recording.from_bytes(data)
        self._requests.labels(model, "miss" if recording is None else "hit").inc()
        return recording

    def hit_ticket(self, ticket: Ticket) -> Ticket:
        return _HitTicket(ticket)

    def fill_ticket(self, ticket: Ticket, decision: CacheDecision, model: str,
                    recorder: Recorder) -> Ticket:
        return _FillTicket(ticket, self, decision.key, model, recorder)

    async def remember(self, key: str, recording: Recording, model: str) -> None:
        assert self.store is not None, "remember() without a backend"
        if await self.store.put(key, recording.to_bytes()):
            self._stored.labels(model).inc()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
