"""The engine server's three probes: startup bounds loading, liveness what a restart cures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from engine.fake import FakeEngine
from engine.liveness import LivenessPolicy, Vitals
from engine.server import EngineServerState, create_engine_app


class StalledEngine(FakeEngine):
    """A fake engine that reports vitals: busy with no step for ``stalled_s``."""

    stalled_s = 0.0

    def vitals(self, now: float) -> Vitals:
        return Vitals(stalled_s=self.stalled_s)


@asynccontextmanager
async def probing(state: EngineServerState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_engine_app(state))  # lifespan not run: no load
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        yield client


async def test_startup_while_loading_then_503_and_liveness_still_200() -> None:
    state = EngineServerState(FakeEngine("m", ready=False))
    async with probing(state) as client:
        assert (await client.get("/startup")).status_code == 503
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 503
        state.started = True
        state.engine.ready = True  # type: ignore[attr-defined]
        assert (await client.get("/startup")).status_code == 200
        assert (await client.get("/ready")).status_code == 200


async def test_load_failure_ends_startup_and_fails_liveness() -> None:
    state = EngineServerState(FakeEngine("m", ready=False))
    state.load_error = "OutOfMemoryError: CUDA out of memory"
    async with probing(state) as client:
        assert (await client.get("/startup")).status_code == 200  # liveness takes over
        health = await client.get("/health")
        assert health.status_code == 503 and "out of memory" in health.text


async def test_liveness_when_engine_stuck_with_requests_then_503() -> None:
    engine = StalledEngine("m")
    state = EngineServerState(engine, started=True, policy=LivenessPolicy(max_stall_s=60))
    async with probing(state) as client:
        engine.stalled_s = 59
        assert (await client.get("/health")).status_code == 200
        engine.stalled_s = 61
        health = await client.get("/health")
        assert health.status_code == 503 and "no step" in health.text
