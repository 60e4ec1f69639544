"""Routing over replicas (engine/routing.py, engine/discovery.py) with stand-ins for vLLM's
server (tests/engine/vllm_fake.py). The real two-replica test (stock vLLM api_servers,
kill -9) is tests/e2e/test_remote_replicas.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from engine.discovery import ReplicaSource
from engine.errors import EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import EmbeddingRequest, EngineOutput, GenerationRequest, SamplingSpec
from engine.remote import ReplicaAccess
from engine.routing import AffinityIndex, ReplicaRouter, RoutingPolicy
from tests.engine.vllm_fake import FakeVllm, RunningReplica, fake_vllms

POLICY = RoutingPolicy(affinity_block_tokens=4, health_interval_s=0.05, eject_after_failures=1)
KEY = "replica-key"


def request(rid: str, prompt: str, max_tokens: int = 64) -> GenerationRequest:
    return GenerationRequest(rid, tuple(ord(c) for c in prompt), SamplingSpec(max_tokens))


async def run(router: ReplicaRouter, req: GenerationRequest) -> list[EngineOutput]:
    return [out async for out in router.generate(req)]


@asynccontextmanager
async def routed(*engines: FakeEngine, other_load: int = 0,
                 ) -> AsyncIterator[tuple[ReplicaRouter, list[RunningReplica]]]:
    fakes = [FakeVllm(engine, api_key=KEY, other_load=other_load if i == 0 else 0)
             for i, engine in enumerate(engines)]
    async with fake_vllms(*fakes) as replicas:
        router = ReplicaRouter("m", 2048, ReplicaSource(tuple(r.url for r in replicas)), POLICY,
                               access=ReplicaAccess(KEY))
        await router.start()
        try:
            yield router, replicas
        finally:
            await router.stop()


def served(replicas: list[RunningReplica]) -> list[int]:
    return [r.replica.requests_total for r in replicas]


def test_affinity_index_finds_the_longest_cached_prefix() -> None:
    index = AffinityIndex(block_tokens=2)
    index.record(index.chain([1, 2, 3, 4]), "a")
    index.record(index.chain([1, 2]), "b")
    assert index.lookup(index.chain([1, 2, 3, 4, 5, 6]), {"a", "b"}) == "a"
    assert index.lookup(index.chain([1, 2, 9, 9]), {"a", "b"}) == "b"
    assert index.lookup(index.chain([1, 2, 3, 4]), {"b"}) == "b"
    assert index.lookup(index.chain([7]), {"a", "b"}) is None


async def test_concurrent_requests_go_to_the_least_busy_replicas() -> None:
    engines = [FakeEngine("m", reply="x" * 20, token_delay_s=0.01) for _ in range(2)]
    async with routed(*engines) as (router, replicas):
        prompts = [f"{i}: a distinct prompt" for i in range(8)]
        await asyncio.gather(*(run(router, request(f"r{i}", p)) for i, p in enumerate(prompts)))
        assert sum(served(replicas)) == 8
        assert min(served(replicas)) >= 3


async def test_conversation_returns_to_the_replica_holding_its_prefix() -> None:
    async with routed(FakeEngine("m"), FakeEngine("m")) as (router, replicas):
        conversation = "system: be brief\nuser: hi\n"
        homes = []
        for turn in range(4):
            before = served(replicas)
            await run(router, request(f"t{turn}", conversation))
            homes.append([a - b for a, b in zip(served(replicas), before, strict=True)])
            conversation += f"assistant: hello\nuser: turn {turn}\n"
        assert all(h == homes[0] for h in homes), homes


async def test_affinity_yields_to_load_when_the_warm_replica_is_busy() -> None:
    engines = [FakeEngine("m", reply="y" * 50, token_delay_s=0.02) for _ in range(2)]
    async with routed(*engines) as (router, replicas):
        same_prefix = [request(f"s{i}", f"shared system prompt, user {i}") for i in range(6)]
        await asyncio.gather(*(run(router, r) for r in same_prefix))
        assert min(served(replicas)) >= 1, served(replicas)


async def test_replica_down_before_first_token_then_retried_on_another() -> None:
    async with routed(FakeEngine("m"), FakeEngine("m")) as (router, replicas):
        await replicas[0].stop()  # still marked healthy: no health round has run yet
        for i in range(4):
            outputs = await run(router, request(f"r{i}", f"prompt {i}"))
            assert outputs[-1].finished
        assert replicas[1].replica.requests_total == 4
        assert [r.healthy for r in router.replicas] == [False, True]


async def test_failure_after_streaming_is_not_retried() -> None:
    async with routed(FakeEngine("m", fail_after_tokens=2)) as (router, _replicas):
        outputs: list[EngineOutput] = []
        with pytest.raises(EngineUnavailableError):
            async for out in router.generate(request("r", "prompt")):
                outputs.append(out)
        assert len(outputs) == 2


async def test_no_ready_replica_then_unavailable() -> None:
    router = ReplicaRouter("m", 2048, ReplicaSource(("http://127.0.0.1:9",)), POLICY)
    await router.start()
    try:
        assert not await router.is_ready()
        with pytest.raises(EngineUnavailableError, match="no ready replica"):
            await run(router, request("r", "prompt"))
    finally:
        await router.stop()


async def test_health_checks_eject_and_readmit_a_replica() -> None:
    async with routed(FakeEngine("m"), FakeEngine("m")) as (router, replicas):
        assert [r.healthy for r in router.replicas] == [True, True]
        replicas[0].replica.healthy = False
        await asyncio.sleep(POLICY.health_interval_s * 6)
        assert [r.healthy for r in router.replicas] == [False, True]
        assert await router.is_ready()
        replicas[0].replica.healthy = True
        await asyncio.sleep(POLICY.health_interval_s * 6)
        assert [r.healthy for r in router.replicas] == [True, True]


async def test_abort_reaches_the_replica_serving_the_request() -> None:
    engines = [FakeEngine("m", reply="z" * 300, token_delay_s=0.02) for _ in range(2)]
    async with routed(*engines) as (router, replicas):
        stream = router.generate(request("victim", "a long one", max_tokens=300))
        await anext(stream)
        serving = [r for r in replicas if r.replica.engine.stats().unfinished_requests]
        await router.abort("victim")
        rest = [out async for out in stream]
        assert rest[-1].finished and rest[-1].choices[0].finish_reason == "abort"
        assert [r.replica.engine.aborted for r in serving] == [["victim"]]


async def test_stats_sum_over_replicas() -> None:
    async with routed(FakeEngine("m"), FakeEngine("m")) as (router, replicas):
        await asyncio.gather(*(run(router, request(f"r{i}", f"p{i} text")) for i in range(4)))
        await router.refresh()
        total = sum(r.replica.engine.stats().generation_tokens_total for r in replicas)
        assert router.stats().generation_tokens_total == total > 0


async def test_dns_source_resolves_a_name_to_replica_urls() -> None:
    assert await ReplicaSource(dns="localhost:8001").resolve() in (
        ("http://127.0.0.1:8001",), ("http://127.0.0.1:8001", "http://[::1]:8001"),
        ("http://[::1]:8001",))
    assert await ReplicaSource(dns="no-such-host.invalid:1").resolve() == ()
    with pytest.raises(ValueError):
        ReplicaSource(urls=("10.0.0.1:80",))


async def test_embed_when_routed_then_replicas_share_inputs_and_a_dead_one_is_skipped() -> None:
    engines = [FakeEngine("e", embedding_size=6) for _ in range(2)]
    async with routed(*engines) as (router, replicas):
        outputs = await asyncio.gather(*(router.embed(EmbeddingRequest(
            f"e{i}", tuple(range(1, i + 3)))) for i in range(6)))
        assert [o.prompt_tokens for o in outputs] == [i + 2 for i in range(6)]
        assert all(len(o.embedding) == 6 for o in outputs)
        assert sum(served(replicas)) == 6
        await replicas[0].stop()
        again = await router.embed(EmbeddingRequest("after", (5, 6, 7)))
        assert again.prompt_tokens == 3


async def test_a_replica_busy_with_another_gateways_requests_gets_fewer() -> None:
    engines = [FakeEngine("m", reply="w" * 10, token_delay_s=0.01) for _ in range(2)]
    async with routed(*engines, other_load=5) as (router, replicas):
        await router.refresh()  # its /metrics: 5 running that this gateway did not send
        await asyncio.gather(*(run(router, request(f"l{i}", f"{i} p")) for i in range(4)))
        assert served(replicas) == [0, 4]
        await router.refresh()
        states = router.replica_states()
        assert [s["running"] for s in states] == [5, 0] and all(s["healthy"] for s in states)


async def test_replica_refusing_the_key_is_ejected_with_the_reason() -> None:
    async with fake_vllms(FakeVllm(FakeEngine("m"), api_key="other")) as [replica]:
        router = ReplicaRouter("m", 2048, ReplicaSource((replica.url,)), POLICY,
                               access=ReplicaAccess(KEY))
        await router.start()
        try:
            with pytest.raises(EngineUnavailableError, match="API key"):
                await run(router, request("r", "prompt"))
            [state] = router.replica_states()
            assert not state["healthy"] and "API key" in str(state["last_error"])
        finally:
            await router.stop()
