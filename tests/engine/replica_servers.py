"""Engine servers around fake engines on loopback, for the fast remote-mode tests.

Real uvicorn + real HTTP streaming (not an in-memory transport), so aborts and broken
connections behave as they do between a gateway and a replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from sse_starlette.sse import AppStatus

from engine.fake import FakeEngine
from engine.server import EngineServerState, create_engine_app
from tests.conftest import free_port


@dataclass
class FakeReplica:
    url: str
    engine: FakeEngine
    state: EngineServerState
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        await self.task


async def start_fake_replica(engine: FakeEngine, port: int | None = None) -> FakeReplica:
    state = EngineServerState(engine)
    port = port or free_port()
    config = uvicorn.Config(create_engine_app(state), host="127.0.0.1", port=port,
                            log_level="warning")
    # As `llm-gateway engine serve` does: otherwise sse-starlette ends every stream in the
    # process when it sees any uvicorn server (here: a stopped replica) exiting.
    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # uvicorn offers a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.01)
    return FakeReplica(f"http://127.0.0.1:{port}", engine, state, server, task)


@asynccontextmanager
async def fake_replicas(*engines: FakeEngine) -> AsyncIterator[list[FakeReplica]]:
    replicas = [await start_fake_replica(engine) for engine in engines]
    try:
        yield replicas
    finally:
        for replica in replicas:
            if not replica.task.done():
                await replica.stop()
