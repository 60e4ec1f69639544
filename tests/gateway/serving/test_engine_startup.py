"""Engines start the first model's first; the others load behind it while it serves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from engine.fake import CharRenderer, FakeEngine
from gateway.serving.engine_startup import EngineStartup
from gateway.serving.registry import ModelRegistry, ServedModel


@dataclass
class SlowStart(FakeEngine):
    """An engine whose load ends when the test lets it (or fails when told to)."""

    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False

    def __post_init__(self) -> None:
        self.ready = False  # not loaded yet

    async def start(self) -> None:
        await self.loaded.wait()
        if self.fail:
            raise RuntimeError("no model here")
        await super().start()


def _registry(*engines: FakeEngine) -> ModelRegistry:
    return ModelRegistry([ServedModel(e.model_name, e, CharRenderer()) for e in engines])


async def test_start_when_two_models_then_the_first_serves_while_the_second_loads() -> None:
    embedder, chat = SlowStart("embedder"), FakeEngine("chat", ready=False)
    failures: list[str] = []
    startup = EngineStartup(_registry(embedder, chat), "chat",
                            lambda name, exc: failures.append(name))
    await asyncio.wait_for(startup.start(), 5)  # the embedder's load does not hold it up
    assert await chat.is_ready() and not await embedder.is_ready()
    embedder.loaded.set()
    await asyncio.wait_for(startup.loaded(), 5)
    assert await embedder.is_ready() and failures == []
    await startup.stop()
    assert not await chat.is_ready() and not await embedder.is_ready()


async def test_start_when_a_later_model_fails_to_load_then_reported_with_its_name() -> None:
    broken = SlowStart("embedder", fail=True)
    failures: list[tuple[str, str]] = []
    startup = EngineStartup(_registry(FakeEngine("chat"), broken), None,
                            lambda name, exc: failures.append((name, str(exc))))
    await startup.start()
    broken.loaded.set()
    await asyncio.wait_for(startup.loaded(), 5)
    assert failures == [("embedder", "no model here")]
    await startup.stop()


async def test_stop_when_a_load_is_under_way_then_it_waits_and_stops_every_engine() -> None:
    chat, embedder = FakeEngine("chat", ready=False), SlowStart("embedder")
    startup = EngineStartup(_registry(chat, embedder), "chat", lambda name, exc: None)
    await startup.start()
    assert await chat.is_ready()
    stopping = asyncio.create_task(startup.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # a half-built engine cannot be interrupted
    embedder.loaded.set()
    await asyncio.wait_for(stopping, 5)
    assert not await embedder.is_ready() and not await chat.is_ready()


async def test_start_when_the_first_model_fails_then_the_start_fails() -> None:
    broken = SlowStart("chat", fail=True)
    broken.loaded.set()
    startup = EngineStartup(_registry(broken, FakeEngine("embedder")), "chat",
                            lambda name, exc: None)
    with pytest.raises(RuntimeError, match="no model here"):
        await startup.start()
