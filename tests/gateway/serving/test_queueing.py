"""The fair queue in the serving pipeline, around a fake engine: who the engine gets next
when it is full, deadlines and clients leaving while queued (no ticket, nothing billed),
batch lines behind online requests, and the band reaching the engine as vLLM's priority."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from engine.fake import CharRenderer, FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from gateway.caching.cache import ResponseCache
from gateway.limits.fair_queue import ClientGoneError, QueueTimeoutError
from gateway.observability.observer import NO_OBSERVER, RunObserver
from gateway.openai.bodies import ChatCompletionRequest
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.serving.accounting import Principal, Ticket, Unmetered
from gateway.serving.exchange import Exchange
from gateway.serving.pipeline import Call, Pipeline
from gateway.serving.plan import Reservable
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import LimitSettings, ResponseCacheSettings
from gateway.upstream.registry import UpstreamRegistry

MODEL = "m"
A, B = Principal("ka", "tenant-a"), Principal("kb", "tenant-b")


@dataclass
class GatedEngine(FakeEngine):
    """Records the order requests reach it; each one's stream ends when let through."""

    started: list[GenerationRequest] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.started.append(request)
        gate = self.gates.setdefault(request.request_id, asyncio.Event())
        first = True
        async for out in super().generate(request):
            if not first:
                await gate.wait()
            first = False
            yield out

    def finish(self, request_id: str) -> None:
        self.gates.setdefault(request_id, asyncio.Event()).set()


@dataclass
class Opened(Unmetered):
    ids: list[str] = field(default_factory=list)

    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None, **extra: object) -> Ticket:
        self.ids.append(request_id)
        return await super().open(principal, plan, request_id, batch_id)


def pipeline(engine: FakeEngine, seats: int = 1, accounting: Unmetered | None = None,
             **limits: object) -> Pipeline:
    registry = ModelRegistry([ServedModel(MODEL, engine, CharRenderer(), seats=seats)])
    cache = ResponseCache(ResponseCacheSettings(backend="off"), None, CollectorRegistry())

    def observe(request_id: str, model: str, tenant: str) -> RunObserver:
        return NO_OBSERVER

    return Pipeline(registry, UpstreamRegistry(), accounting or Unmetered(), cache, observe,
                    LimitSettings.model_validate(limits), lambda: False)


def chat(max_tokens: int = 8) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
         "max_tokens": max_tokens})


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _finish(engine: GatedEngine, exchange: Exchange, request_id: str) -> None:
    engine.finish(request_id)
    assert await exchange.complete() is not None


async def test_serve_when_the_engine_is_full_then_a_light_tenant_runs_before_a_heavy_backlog() -> (
        None):
    engine = GatedEngine(MODEL, reply="abcdefgh")
    served = pipeline(engine, seats=1)
    running = await served.serve(Call(chat(), A, "a0"))
    queued = [asyncio.create_task(served.serve(Call(chat(), A, f"a{i}"))) for i in (1, 2, 3)]
    await _settle()
    light = asyncio.create_task(served.serve(Call(chat(), B, "b0")))
    await _settle()
    assert [r.request_id for r in engine.started] == ["a0"]
    await _finish(engine, running, "a0")
    await _settle()
    assert [r.request_id for r in engine.started] == ["a0", "b0"]  # not behind a1-a3
    await _finish(engine, await light, "b0")
    for task, rid in zip(queued, ("a1", "a2", "a3"), strict=True):
        await _settle()
        assert engine.started[-1].request_id == rid
        await _finish(engine, await task, rid)


async def test_serve_when_queued_past_queue_timeout_then_429_and_no_ticket_opened() -> None:
    engine = GatedEngine(MODEL, reply="abc")
    opened = Opened()
    served = pipeline(engine, accounting=opened, queue_timeout_s=0.05)
    running = await served.serve(Call(chat(), A, "a0"))
    with pytest.raises(QueueTimeoutError) as raised:
        await served.serve(Call(chat(), B, "b0"))
    assert raised.value.status_code == 429 and "retry-after" in raised.value.headers()
    assert opened.ids == ["a0"] and [r.request_id for r in engine.started] == ["a0"]
    await _finish(engine, running, "a0")


async def test_serve_when_the_client_leaves_while_queued_then_it_leaves_unbilled() -> None:
    engine = GatedEngine(MODEL, reply="abc")
    opened = Opened()
    served = pipeline(engine, accounting=opened)
    running = await served.serve(Call(chat(), A, "a0"))
    gone = asyncio.Event()

    async def disconnected() -> bool:
        return gone.is_set()

    leaving = asyncio.create_task(served.serve(Call(chat(), B, "b0", disconnected=disconnected)))
    await _settle()
    gone.set()
    with pytest.raises(ClientGoneError):
        await asyncio.wait_for(leaving, 5.0)
    queue = served.queues.get(MODEL)
    assert queue is not None and queue.depth == 0
    assert opened.ids == ["a0"]  # no ledger row for b0
    await _finish(engine, running, "a0")
    assert queue.in_use == 0


async def test_serve_when_a_batch_line_and_an_online_request_wait_then_online_goes_first() -> (
        None):
    engine = GatedEngine(MODEL, reply="abc")
    served = pipeline(engine)
    running = await served.serve(Call(chat(), A, "a0"))
    line = asyncio.create_task(served.serve(Call(chat(), B, "line", batch_id="batch_1")))
    await _settle()
    online = asyncio.create_task(served.serve(Call(chat(), A, "a1")))
    await _settle()
    await _finish(engine, running, "a0")
    await _settle()
    assert [r.request_id for r in engine.started] == ["a0", "a1"]
    await _finish(engine, await online, "a1")
    await _settle()
    assert engine.started[-1].request_id == "line"
    assert engine.started[-1].priority == 1 and engine.started[1].priority == 0
    await _finish(engine, await line, "line")


async def test_serve_when_a_key_has_a_higher_priority_then_it_jumps_the_queue_and_the_engine() -> (
        None):
    engine = GatedEngine(MODEL, reply="abc")
    served = pipeline(engine)
    urgent_key = dataclasses.replace(B, priority=5)
    running = await served.serve(Call(chat(), A, "a0"))
    normal = asyncio.create_task(served.serve(Call(chat(), A, "a1")))
    await _settle()
    urgent = asyncio.create_task(served.serve(Call(chat(), urgent_key, "b0")))
    lowered = asyncio.create_task(served.serve(Call(chat(), urgent_key, "b1", priority=0)))
    await _settle()
    await _finish(engine, running, "a0")
    await _settle()
    assert engine.started[-1].request_id == "b0" and engine.started[-1].priority == -5
    await _finish(engine, await urgent, "b0")
    await _settle()
    assert engine.started[-1].request_id == "a1"  # b1 asked for band 0: its turn after a1
    await _finish(engine, await normal, "a1")
    await _settle()
    await _finish(engine, await lowered, "b1")


async def test_serve_when_fair_queue_is_off_then_nothing_waits_in_the_gateway() -> None:
    engine = GatedEngine(MODEL, reply="abc")
    served = pipeline(engine, fair_queue=False)
    first = await served.serve(Call(chat(), A, "a0"))
    second = await asyncio.wait_for(served.serve(Call(chat(), B, "b0")), 5.0)
    await _finish(engine, first, "a0")
    await _finish(engine, second, "b0")


def _embeddings(seats: int) -> tuple[Pipeline, FakeEngine]:
    engine = FakeEngine("e", embedding_size=4)
    registry = ModelRegistry([ServedModel("e", engine, CharRenderer(), task="embed",
                                          embedding_dimensions=(4,), seats=seats)])
    cache = ResponseCache(ResponseCacheSettings(backend="off"), None, CollectorRegistry())
    return Pipeline(registry, UpstreamRegistry(), Unmetered(), cache,
                    lambda *_: NO_OBSERVER, LimitSettings(), lambda: False), engine


def embed(inputs: list[str]) -> EmbeddingsRequest:
    return EmbeddingsRequest.model_validate({"model": "e", "input": inputs})


async def test_embed_when_the_pooling_engine_is_full_then_the_next_waits_for_its_seats() -> None:
    served, _ = _embeddings(seats=2)
    first = await served.serve(Call(embed(["x", "y"]), A, "a0"))  # two inputs: both seats
    second = asyncio.create_task(served.serve(Call(embed(["z"]), B, "b0")))
    await _settle()
    queue = served.queues.get("e")
    assert queue is not None and queue.in_use == 2 and queue.depth == 1 and not second.done()
    assert await first.complete() is not None  # its ticket settles: the seats are free
    await _settle()
    assert second.done() and queue.in_use == 1
    assert await (await second).complete() is not None
    assert queue.in_use == 0


async def test_serve_when_a_light_tenant_comes_to_a_saturated_engine_then_a_reserved_seat(
) -> None:
    engine = GatedEngine(MODEL, reply="abc")
    served = pipeline(engine, seats=4, queue_reserve=0.25)  # one of four held back
    running = [await served.serve(Call(chat(), A, f"a{i}")) for i in range(3)]
    heavy = asyncio.create_task(served.serve(Call(chat(), A, "a3")))
    await _settle()
    light = await asyncio.wait_for(served.serve(Call(chat(), B, "b0")), 5.0)
    assert [r.request_id for r in engine.started] == ["a0", "a1", "a2", "b0"]
    assert not heavy.done()
    await _finish(engine, light, "b0")
    await _finish(engine, running[0], "a0")
    await _settle()
    assert engine.started[-1].request_id == "a3"
    await _finish(engine, await heavy, "a3")
    for i, exchange in enumerate(running[1:], start=1):
        await _finish(engine, exchange, f"a{i}")
