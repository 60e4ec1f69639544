"""The supervisor restarts a dead engine and backs off when restarting fails."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from engine.supervisor import supervise


@dataclass
class FlakyEngine:
    model_name: str = "m"
    dead: bool = False
    restarts: int = 0
    failures_left: int = 0

    def is_dead(self) -> bool:
        return self.dead

    async def restart(self) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("still broken")
        self.restarts += 1
        self.dead = False


async def run_for(engine: FlakyEngine, seconds: float) -> None:
    task = asyncio.create_task(supervise(engine, check_every_s=0.01, max_backoff_s=0.05))
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_supervise_when_engine_dies_then_restarts_it_once() -> None:
    engine = FlakyEngine(dead=True)
    await run_for(engine, 0.2)
    assert engine.restarts == 1 and not engine.dead


async def test_supervise_when_restart_fails_then_retries_until_it_works() -> None:
    engine = FlakyEngine(dead=True, failures_left=3)
    await run_for(engine, 0.5)
    assert engine.failures_left == 0 and engine.restarts == 1 and not engine.dead


async def test_supervise_when_engine_healthy_then_never_restarts() -> None:
    engine = FlakyEngine()
    await run_for(engine, 0.1)
    assert engine.restarts == 0
