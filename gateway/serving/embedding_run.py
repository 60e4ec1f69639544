"""One embeddings request on the engine: every input pooled, the request settled once.

Each input runs as its own engine request (``<request id>-<i>``), all at once: vLLM
batches them. The prompt tokens billed are those of the inputs the engine finished (an
embedding generates nothing); a client that goes away, a timeout or an engine failure
aborts the rest, and the request is settled with what was done, exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import anyio

from engine.protocol import EmbeddingOutput, EmbeddingRequest, Engine
from gateway.errors import ServiceUnavailableError
from gateway.observability.observer import RunObserver
from gateway.serving.accounting import Outcome, Settled, Status, Ticket
from gateway.serving.planning.embeddings import EmbeddingPlan
from gateway.serving.tally import Usage

Disconnected = Callable[[], Awaitable[bool]]
POLL_S = 0.5


class EmbeddingRun:
    def __init__(self, engine: Engine, plan: EmbeddingPlan, request_id: str, ticket: Ticket,
                 observer: RunObserver) -> None:
        self._engine = engine
        self._ticket = ticket
        self._observer = observer
        self._requests = [
            EmbeddingRequest(f"{request_id}-{i}" if len(plan.inputs) > 1 else request_id,
                             ids, plan.dimensions) for i, ids in enumerate(plan.inputs)]
        self._started = time.monotonic()
        self._settled: Settled | None = None

    async def run(self, disconnected: Disconnected | None,
                  timeout_s: float | None) -> tuple[list[EmbeddingOutput], Settled] | None:
        """The outputs in input order and the settlement; None when the client left."""
        tasks = [asyncio.create_task(self._engine.embed(r)) for r in self._requests]
        gone, status = False, "ok"
        try:
            gone = await self._wait(tasks, disconnected, timeout_s)
            status = "aborted" if gone else "ok"
        except BaseException:
            status = "error"
            raise
        finally:
            settled = await self._close(tasks, status)  # type: ignore[arg-type]
        if gone:
            return None
        return [t.result() for t in tasks], settled

    async def _wait(self, tasks: list[asyncio.Task[EmbeddingOutput]],
                    disconnected: Disconnected | None, timeout_s: float | None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=POLL_S,
                                               return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # an engine failure surfaces here
            if pending and disconnected is not None and await disconnected():
                return True
            if pending and deadline is not None and time.monotonic() > deadline:
                raise ServiceUnavailableError(f"the request took longer than {timeout_s:.0f} s",
                                              retry_after=5)
        return False

    async def _close(self, tasks: list[asyncio.Task[EmbeddingOutput]],
                     status: Status) -> Settled:
        """Abort what still runs, then settle with the inputs the engine finished."""
        with anyio.CancelScope(shield=True):
            for task, request in zip(tasks, self._requests, strict=True):
                if not task.done():
                    task.cancel()
                    await self._engine.abort(request.request_id)
            await asyncio.gather(*tasks, return_exceptions=True)
            finished = [t.result() for t in tasks if t.done() and not t.cancelled()
                        and t.exception() is None]
            if self._settled is None:
                outcome = Outcome(usage=Usage(sum(o.prompt_tokens for o in finished), 0),
                                  status=status, latency_s=time.monotonic() - self._started,
                                  prompt_only=True)
                self._settled = await self._ticket.settle(outcome)
                self._observer.settled(outcome, self._settled)
        assert self._settled is not None, "settled above"
        return self._settled
