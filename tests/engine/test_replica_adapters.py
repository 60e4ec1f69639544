"""LoRA adapters on remote replicas (engine/replica_adapters.py, engine/routing.py) over
stand-ins for vLLM's server with runtime LoRA updating (tests/engine/vllm_fake.py). The real
replicas load the shipped think adapter in tests/e2e/test_remote_replicas.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from engine.discovery import ReplicaSource
from engine.errors import EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import EngineOutput, GenerationRequest, LoraTarget, SamplingSpec
from engine.remote import ReplicaAccess
from engine.replica_adapters import AdapterLoadError
from engine.routing import ReplicaRouter, RoutingPolicy
from tests.engine.vllm_fake import FakeVllm, RunningReplica, fake_vllms

POLICY = RoutingPolicy(affinity_block_tokens=4, health_interval_s=0.05, eject_after_failures=1)
KEY = "replica-key"


def on(adapter: LoraTarget, rid: str, prompt: str = "hello there",
       max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest(rid, tuple(ord(c) for c in prompt), SamplingSpec(max_tokens),
                             lora=adapter)


def target(tmp_path: Path, name: str, lora_id: int = 1) -> LoraTarget:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return LoraTarget(name, lora_id, str(folder))


async def run(router: ReplicaRouter, req: GenerationRequest) -> list[EngineOutput]:
    return [out async for out in router.generate(req)]


@asynccontextmanager
async def routed(*fakes: FakeVllm, max_loras: int = 2,
                 ) -> AsyncIterator[tuple[ReplicaRouter, list[RunningReplica]]]:
    async with fake_vllms(*fakes) as replicas:
        router = ReplicaRouter("m", 2048, ReplicaSource(tuple(r.url for r in replicas)), POLICY,
                               access=ReplicaAccess(KEY, max_loras=max_loras))
        await router.start()
        try:
            yield router, replicas
        finally:
            await router.stop()


def replica(delay_s: float = 0.0) -> FakeVllm:
    return FakeVllm(FakeEngine(model_name="m", token_delay_s=delay_s), api_key=KEY)


async def test_requests_on_a_new_adapter_load_it_once_then_name_it_as_model(
        tmp_path: Path) -> None:
    think = target(tmp_path, "think")
    async with routed(replica(delay_s=0.01)) as (router, [only]):
        outputs = await asyncio.gather(*(run(router, on(think, f"r{i}")) for i in range(4)))
    assert all(out[-1].finished for out in outputs)
    assert only.replica.lora_calls == [("load", "think")]  # four requests, one load
    assert {body["model"] for body in only.replica.bodies} == {"think"}
    assert only.replica.loras == {"think": think.path}


async def test_adapter_requests_go_to_the_replica_that_holds_it(tmp_path: Path) -> None:
    think = target(tmp_path, "think")
    async with routed(replica(), replica()) as (router, replicas):
        for i in range(6):
            await run(router, on(think, f"r{i}", prompt=f"prompt number {i} differs"))
        holders = [r for r in replicas if "think" in r.replica.loras]
    assert len(holders) == 1  # never loaded twice while the holder is not much busier
    assert holders[0].replica.requests_total == 6


async def test_past_max_loras_the_least_recently_used_idle_adapter_is_unloaded(
        tmp_path: Path) -> None:
    a, b, c = (target(tmp_path, name, i) for i, name in enumerate("abc", start=1))
    async with routed(replica(), max_loras=2) as (router, [only]):
        for i, adapter in enumerate((a, b, a, c)):
            await run(router, on(adapter, f"r{i}"))
        state = router.replica_states()[0]
    assert only.replica.lora_calls == [("load", "a"), ("load", "b"), ("load", "c"),
                                       ("unload", "b")]  # b was used least recently
    assert set(only.replica.loras) == {"a", "c"}
    assert state["adapters"] == ["a", "c"]


async def test_an_adapter_a_request_is_running_on_is_not_unloaded(tmp_path: Path) -> None:
    a, b = target(tmp_path, "a", 1), target(tmp_path, "b", 2)
    async with routed(replica(delay_s=0.05), max_loras=1) as (router, [only]):
        long = asyncio.create_task(run(router, on(a, "long", max_tokens=20)))
        for _ in range(1000):  # until the long request runs on "a"
            if "a" in only.replica.loras and only.replica.bodies:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the long request never started")
        await run(router, on(b, "short", max_tokens=2))
        assert "a" in only.replica.loras  # still generating on it: kept past max_loras
        assert (await long)[-1].finished
        await run(router, on(b, "next", max_tokens=2))
    assert ("unload", "a") in only.replica.lora_calls  # idle now: the next request evicts it


async def test_a_replica_that_lost_its_adapter_gets_it_again(tmp_path: Path) -> None:
    think = target(tmp_path, "think")
    async with routed(replica()) as (router, [only]):
        await run(router, on(think, "r1"))
        only.replica.loras.clear()  # as a restart between two health probes leaves it
        out = await run(router, on(think, "r2"))
    assert out[-1].finished
    assert only.replica.lora_calls == [("load", "think"), ("load", "think")]


async def test_a_folder_the_replicas_cannot_read_is_refused_and_no_replica_ejected(
        tmp_path: Path) -> None:
    missing = LoraTarget("ghost", 1, str(tmp_path / "nowhere"))
    async with routed(replica(), replica()) as (router, _):
        with pytest.raises(AdapterLoadError, match="No adapter found"):
            await router.preload(missing)
        with pytest.raises(AdapterLoadError):
            await run(router, on(missing, "r1"))
        assert all(r.healthy for r in router.replicas)
        plain = GenerationRequest("r2", (1, 2, 3), SamplingSpec(4))
        assert (await run(router, plain))[-1].finished


async def test_a_replica_without_runtime_loading_says_how_to_start_it(tmp_path: Path) -> None:
    fake = replica()
    fake.lora_runtime = False
    async with routed(fake) as (router, _):
        with pytest.raises(EngineUnavailableError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            await router.preload(target(tmp_path, "think"))


async def test_registration_preloads_on_one_replica_and_requests_reuse_it(
        tmp_path: Path) -> None:
    think = target(tmp_path, "think")
    async with routed(replica(), replica()) as (router, replicas):
        await router.preload(think)
        await run(router, on(think, "r1"))
    assert sorted(len(r.replica.lora_calls) for r in replicas) == [0, 1]
