"""Several stock vLLM replicas of one model behind the one ``Engine`` interface.

Each request goes to the least loaded replica (the requests it runs and queues, from its own
``/metrics``, plus this gateway's requests sent since), unless a replica already holds the KV
cache of the request's leading prompt blocks (prefix affinity: a conversation's next turn
shares its earlier turns' tokens) and is not much busier. A health loop probes every
replica's ``/health`` and ``/metrics`` and re-resolves the replica source; a replica that
fails is ejected until it answers again, and a request that failed before anything was
streamed is retried on another replica. A request on a LoRA adapter prefers the replicas
that hold it already (engine/replica_adapters.py: a miss loads it, the least recently used
beyond ``max_loras`` is unloaded). Routes never know about any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from engine.discovery import ReplicaSource
from engine.errors import EngineUnavailableError
from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
    LoraTarget,
    SamplingSpec,
)
from engine.remote import RemoteEngine, ReplicaAccess, default_client
from engine.replica_adapters import AdapterLoadError
from engine.replica_metrics import merge_stats

log = logging.getLogger("llm_gateway.engine.routing")
AFFINITY_SLACK = 2  # a warm replica may carry this many more requests than the idlest one
AFFINITY_ENTRIES = 65_536  # prefix blocks remembered (least recently used are forgotten)


@dataclass(frozen=True)
class RoutingPolicy:
    affinity_block_tokens: int = 32
    health_interval_s: float = 2.0
    eject_after_failures: int = 2
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.affinity_block_tokens < 1 or self.eject_after_failures < 1:
            raise ValueError("affinity_block_tokens and eject_after_failures must be >= 1")
        if self.health_interval_s <= 0 or self.max_attempts < 1:
            raise ValueError("health_interval_s must be > 0 and max_attempts >= 1")


def _digest(*parts: bytes) -> int:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "big")


class AffinityIndex:
    """Chained hashes of whole prompt blocks -> the replica that last served them."""

    def __init__(self, block_tokens: int, capacity: int = AFFINITY_ENTRIES) -> None:
        self._block = block_tokens
        self._capacity = capacity
        self._owner: OrderedDict[int, str] = OrderedDict()

    def chain(self, tokens: Sequence[int]) -> list[int]:
        hashes, previous = [], 0
        for end in range(self._block, len(tokens) + 1, self._block):
            block = b"".join(t.to_bytes(4, "little") for t in tokens[end - self._block:end])
            previous = _digest(previous.to_bytes(8, "big"), block)
            hashes.append(previous)
        return hashes

    def lookup(self, chain: list[int], candidates: set[str]) -> str | None:
        """The candidate holding the longest cached prefix of ``chain``."""
        for key in reversed(chain):
            owner = self._owner.get(key)
            if owner in candidates:
                return owner
        return None

    def record(self, chain: list[int], url: str) -> None:
        for key in chain:
            self._owner[key] = url
            self._owner.move_to_end(key)
        while len(self._owner) > self._capacity:
            self._owner.popitem(last=False)


def _holding(candidates: list[Replica], least: Replica, adapter: str,
             seed: bytes) -> tuple[list[Replica], Replica]:
    """Replicas that hold the adapter, and the least loaded of them, unless each carries
    ``AFFINITY_SLACK`` more requests than the idlest replica (then loading it elsewhere is
    cheaper than waiting): the candidates unchanged."""
    holding = [r for r in candidates if r.engine.adapters.holds(adapter)]
    if not holding:
        return candidates, least
    best = min(holding, key=lambda r: (r.engine.load, _digest(seed, r.url.encode())))
    if best.engine.load > least.engine.load + AFFINITY_SLACK:
        return candidates, least
    return holding, best


@dataclass
class Replica:
    engine: RemoteEngine
    failures: int = 0
    healthy: bool = False

    @property
    def url(self) -> str:
        return self.engine.base_url

    def state(self) -> dict[str, object]:
        """What ``/admin/engines`` shows of this replica."""
        stats = self.engine.stats()
        return {"url": self.url, "healthy": self.healthy, "load": self.engine.load,
                "adapters": list(self.engine.adapters.names()),
                "outstanding": self.engine.outstanding, "running": stats.running,
                "waiting": stats.waiting, "kv_cache_usage": stats.kv_cache_usage,
                "errors_total": self.engine.errors_total, "last_error": self.engine.last_error}


class ReplicaRouter:
    """Implements ``Engine`` for a model served by stock vLLM replicas (``vllm serve``)."""

    def __init__(
        self, model_name: str, max_model_len: int, source: ReplicaSource,
        policy: RoutingPolicy, client: httpx.AsyncClient | None = None,
        access: ReplicaAccess | None = None,
    ) -> None:
        self._model_name = model_name
        self._max_model_len = max_model_len
        self._source = source
        self._policy = policy
        self._access = access or ReplicaAccess()
        self._client = client
        self._owns_client = client is None
        self._replicas: dict[str, Replica] = {}
        self._serving: dict[str, Replica] = {}
        self._affinity = AffinityIndex(policy.affinity_block_tokens)
        self._health: asyncio.Task[None] | None = None

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def replicas(self) -> tuple[Replica, ...]:
        return tuple(self._replicas.values())

    async def start(self) -> None:
        if self._client is None:
            self._client = default_client()
        await self.refresh()
        if self._health is None:
            self._health = asyncio.create_task(self._health_loop())

    async def stop(self) -> None:
        if self._health is not None:
            self._health.cancel()
            self._health = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def is_ready(self) -> bool:
        return any(r.healthy for r in self._replicas.values())

    def stats(self) -> EngineStats:
        return merge_stats([r.engine.stats() for r in self._replicas.values()])

    def replica_states(self) -> list[dict[str, object]]:
        return [r.state() for r in self._replicas.values()]

    async def refresh(self) -> None:
        """Re-resolve the replicas, then probe each one."""
        assert self._client is not None, "start() first"
        urls = await self._source.resolve()
        for url in set(self._replicas) - set(urls):
            del self._replicas[url]  # streams in flight keep their engine object
        for url in urls:
            if url not in self._replicas:
                engine = RemoteEngine(url, self._model_name, self._max_model_len, self._client,
                                      self._access)
                self._replicas[url] = Replica(engine)
        replicas = list(self._replicas.values())
        results = await asyncio.gather(*(r.engine.probe() for r in replicas))
        for replica, ok in zip(replicas, results, strict=True):
            self._record_probe(replica, ok)

    def _record_probe(self, replica: Replica, ok: bool) -> None:
        if ok:
            if not replica.healthy:
                log.info("replica %s of %s is ready", replica.url, self._model_name)
            replica.failures, replica.healthy = 0, True
            return
        replica.failures += 1
        if replica.healthy and replica.failures >= self._policy.eject_after_failures:
            log.warning("replica %s of %s ejected (health check)", replica.url, self._model_name)
            replica.healthy = False

    def _eject(self, replica: Replica, reason: str) -> None:
        if replica.healthy:
            log.warning("replica %s of %s ejected: %s", replica.url, self._model_name, reason)
        replica.engine.mark_failed(reason)
        replica.healthy = False
        replica.failures = max(replica.failures, self._policy.eject_after_failures)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._policy.health_interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("health round for %s failed", self._model_name)

    def _choose(self, request: GenerationRequest, exclude: set[str]) -> Replica | None:
        candidates = [r for r in self._replicas.values() if r.healthy and r.url not in exclude]
        if not candidates:
            return None
        chain = self._affinity.chain(request.prompt_token_ids)
        seed = (chain[0] if chain else 0).to_bytes(8, "big")
        least = min(candidates, key=lambda r: (r.engine.load, _digest(seed, r.url.encode())))
        if request.lora is not None:
            candidates, least = _holding(candidates, least, request.lora.name, seed)
        chosen = least
        warm_url = self._affinity.lookup(chain, {r.url for r in candidates})
        if warm_url is not None:
            warm = self._replicas[warm_url]
            if warm.engine.load <= least.engine.load + AFFINITY_SLACK:
                chosen = warm
        self._affinity.record(chain, chosen.url)
        return chosen

    async def _pick(self, request: GenerationRequest, tried: set[str],
                    failure: EngineUnavailableError | None = None) -> Replica:
        """The replica for this attempt; none left: the last attempt's failure, if any."""
        replica = self._choose(request, tried)
        if replica is None and not tried:
            await self.refresh()  # e.g. the first request before the first health round
            replica = self._choose(request, tried)
        if replica is None:
            raise failure or EngineUnavailableError(f"no ready replica of {self._model_name}")
        return replica

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        tried: set[str] = set()
        failure: EngineUnavailableError | None = None
        for attempt in range(1, self._policy.max_attempts + 1):
            replica = await self._pick(request, tried, failure)
            tried.add(replica.url)
            self._serving[request.request_id] = replica
            streamed = False
            try:
                stream = replica.engine.generate(request)
                async with contextlib.aclosing(stream):  # closing it aborts on the replica
                    async for out in stream:
                        streamed = True
                        yield out
                return
            except EngineUnavailableError as exc:
                if not isinstance(exc, AdapterLoadError):  # that replica itself is fine
                    self._eject(replica, str(exc))
                if streamed or attempt == self._policy.max_attempts:
                    raise
                log.info("retrying %s elsewhere: %s", request.request_id, exc)
                failure = exc
            finally:
                self._serving.pop(request.request_id, None)

    async def preload(self, lora: LoraTarget) -> None:
        """Load an adapter on the least loaded ready replica now (its registration): what the
        replicas refuse (a path they cannot read, too high a rank) is refused here first."""
        replica = await self._pick(GenerationRequest("preload", (0,), SamplingSpec(max_tokens=1)),
                                   set())
        await replica.engine.adapters.acquire(lora)
        replica.engine.adapters.release(lora.name)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        """The least loaded replica; one that fails is ejected and another one tried."""
        tried: set[str] = set()
        failure: EngineUnavailableError | None = None
        probe = GenerationRequest(request.request_id, request.prompt_token_ids,
                                  SamplingSpec(max_tokens=1))  # routed like its prompt
        for attempt in range(1, self._policy.max_attempts + 1):
            replica = await self._pick(probe, tried, failure)
            tried.add(replica.url)
            self._serving[request.request_id] = replica
            try:
                return await replica.engine.embed(request)
            except EngineUnavailableError as exc:
                self._eject(replica, str(exc))
                if attempt == self._policy.max_attempts:
                    raise
                failure = exc
            finally:
                self._serving.pop(request.request_id, None)
        raise AssertionError("unreachable: the last attempt raises")

    async def abort(self, request_id: str) -> None:
        replica = self._serving.get(request_id)
        if replica is not None:
            await replica.engine.abort(request_id)
