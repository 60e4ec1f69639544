"""A dispatched request, ready to answer: streamed as SSE events or collected whole.

``EngineExchange`` answers from a ``RequestRun`` on our engine (or a cache replay);
the upstream relay offers the same two ways. However an exchange ends (finished, client
gone, failure, timeout), its run is closed: aborted if unfinished, then settled once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.errors import ServiceUnavailableError
from gateway.metering.pricing import usd_text
from gateway.serving.accounting import Settled
from gateway.serving.embedding_run import EmbeddingRun
from gateway.serving.formatting.embeddings import embeddings_body
from gateway.serving.formatting.responder import Responder
from gateway.serving.planning.embeddings import Encoding
from gateway.serving.run import RequestRun
from gateway.streaming.sse import run_events

Disconnected = Callable[[], Awaitable[bool]]
POLL_S = 0.5  # how often a collecting request checks that its client is still there


@dataclass(frozen=True)
class Completed:
    body: dict[str, Any]
    settled: Settled

    @property
    def cost_headers(self) -> dict[str, str]:
        cost = self.settled.cost
        return {} if cost is None else {"x-request-cost": usd_text(cost)}


class Exchange(Protocol):
    stream: bool
    headers: dict[str, str]

    def events(self) -> AsyncIterator[dict[str, str]]:
        """The SSE events of a streamed answer, ending with ``[DONE]``."""
        ...

    async def complete(self, disconnected: Disconnected | None = None,
                       timeout_s: float | None = None) -> Completed | None:
        """The whole answer; None when the client went away first."""
        ...


@dataclass
class EngineExchange:
    run: RequestRun
    responder: Responder
    stream: bool
    headers: dict[str, str] = field(default_factory=dict)
    deadline_s: float = 1800.0  # no stream lasts longer (limits.stream_deadline_s)

    def events(self) -> AsyncIterator[dict[str, str]]:
        return run_events(self.run, self.responder, self.deadline_s)

    async def complete(self, disconnected: Disconnected | None = None,
                       timeout_s: float | None = None) -> Completed | None:
        collect = asyncio.create_task(self._drain())
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not collect.done():
                await asyncio.wait({collect}, timeout=POLL_S)
                if collect.done():
                    break
                if disconnected is not None and await disconnected():
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"the request took longer than {timeout_s:.0f} s", retry_after=5)
            settled = collect.result()
        finally:
            if not collect.done():
                collect.cancel()
            await self.run.close()
        return Completed(await self.responder.full(self.run.tally, settled), settled)

    async def _drain(self) -> Settled:
        async for _ in self.run.outputs():
            pass
        return await self.run.settle()


@dataclass
class EmbeddingExchange:
    """An embeddings request: always answered whole."""

    run: EmbeddingRun
    model: str
    encoding: Encoding
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False

    def events(self) -> AsyncIterator[dict[str, str]]:
        raise AssertionError("an embeddings answer is never streamed")

    async def complete(self, disconnected: Disconnected | None = None,
                       timeout_s: float | None = None) -> Completed | None:
        result = await self.run.run(disconnected, timeout_s)
        if result is None:
            return None
        outputs, settled = result
        return Completed(embeddings_body(self.model, outputs, self.encoding, settled), settled)
