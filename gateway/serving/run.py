"""One request on the engine, from dispatch to settlement.

``RequestRun`` owns the engine stream, the ``Tally`` and the billing ``Ticket``. However
it ends (finished, client gone, engine failure, timeout), ``close`` aborts the engine
request if it is still running and settles the ticket exactly once.

Billing must match what the engine counted. Each read of the engine stream runs in its
own task, shielded from the reader's cancellation (a client that hangs up cancels the
reader), and is tallied by that task; after an abort, ``close`` keeps reading until the
engine's final output, which carries the tokens it generated before the abort took
effect and that nobody had read yet.

The stall timeout is one timer per run, not one per output: each wait for an output sets
its deadline (a float), and the timer, when it fires early, re-arms itself at the current
wait's deadline; only a wait still pending at its deadline is cut off. Same bound, exactly,
as a timeout around each wait, without a timer armed and cancelled per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

import anyio

from engine.errors import EngineUnavailableError
from engine.protocol import Engine, EngineOutput, GenerationRequest
from gateway.caching.recording import Recorder
from gateway.errors import ServiceUnavailableError
from gateway.observability.observer import NO_OBSERVER, RunObserver
from gateway.serving.accounting import Outcome, Settled, Status, Ticket
from gateway.serving.fanout import merged
from gateway.serving.tally import Tally

DRAIN_TIMEOUT_S = 10.0  # after an abort, how long to wait for the engine's final output


class RequestRun:
    def __init__(
        self,
        engine: Engine,
        requests: Sequence[GenerationRequest],
        ticket: Ticket,
        stall_timeout_s: float,
        observer: RunObserver = NO_OBSERVER,
        recorder: Recorder | None = None,
        *,
        prompts: Sequence[int] | None = None,
        keep_logprobs: bool = True,
        count_reasoning: Callable[[Sequence[int]], int] | None = None,
    ) -> None:
        """``prompts[i]``: which distinct prompt request ``i`` runs (several requests:
        several prompts, or greedy copies of one); by default each request its own."""
        assert requests, "a run needs at least one engine request"
        self.requests = tuple(requests)
        prompts = list(range(len(requests))) if prompts is None else list(prompts)
        first = {p: r for r, p in reversed(list(zip(requests, prompts, strict=True)))}
        prompt_tokens = sum(len(r.prompt_token_ids) for r in first.values())
        choices = sum(r.sampling.n for r in requests)
        self.tally = Tally(prompt_tokens, choices, keep_logprobs, count_reasoning)
        self._engine = engine
        self._ticket = ticket
        self._stall = stall_timeout_s
        self._observer = observer
        self._recorder = recorder  # the response cache's copy of every output
        self._stream: AsyncIterator[EngineOutput] = (
            engine.generate(requests[0]) if len(requests) == 1
            else merged(engine, requests, prompts, prompt_tokens))
        self._pending: EngineOutput | None = None
        self._started = time.monotonic()
        self._ttft: float | None = None
        self._settled: Settled | None = None
        self._failed = False
        self._inflight: asyncio.Future[EngineOutput | None] | None = None
        self._waiter: asyncio.Future[EngineOutput | None] | None = None  # the current wait
        self._wait_until = 0.0  # its deadline (loop time)
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stalled = False  # the timer cut a wait off

    async def _read(self) -> EngineOutput | None:
        """One engine output, tallied here: the one place outputs are counted."""
        try:
            out = await anext(self._stream)
        except StopAsyncIteration:
            return None
        if self._ttft is None and any(d.token_ids for d in out.choices):
            self._ttft = time.monotonic() - self._started
        self.tally.add(out)
        self._observer.output(out)
        if self._recorder is not None:
            self._recorder.add(out)
        return out

    async def _next(self) -> EngineOutput | None:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._read())
        inflight = self._inflight
        try:
            return await self._wait(inflight)
        except EngineUnavailableError:
            self._failed = True
            raise
        finally:
            if inflight.done() and self._inflight is inflight:
                self._inflight = None

    async def _wait(self, inflight: asyncio.Future[EngineOutput | None]
                    ) -> EngineOutput | None:
        """``inflight``'s output, shielded (a cancelled reader leaves the read running), or a
        503 once nothing came for the stall timeout."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = asyncio.shield(inflight)
        self._wait_until = loop.time() + self._stall
        self._stalled = False
        if self._stall_timer is None:
            self._stall_timer = loop.call_at(self._wait_until, self._check_stall)
        try:
            return await waiter
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if not self._stalled or (task is not None and task.cancelling()):
                raise  # cancelled from outside: not a stall
            raise self._stall_error() from exc
        except TimeoutError as exc:  # the read's own timeout: a stall, as ever
            raise self._stall_error() from exc
        finally:
            self._waiter = None

    def _stall_error(self) -> ServiceUnavailableError:
        self._failed = True
        return ServiceUnavailableError(
            f"the engine produced nothing for {self._stall:.0f} s", retry_after=5)

    def _check_stall(self) -> None:
        self._stall_timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no wait pending: the next one arms the timer again
        loop = asyncio.get_running_loop()
        if loop.time() >= self._wait_until:
            self._stalled = True
            waiter.cancel()  # the shield's outer future: the read itself goes on
        else:
            self._stall_timer = loop.call_at(self._wait_until, self._check_stall)

    async def prime(self) -> None:
        """Wait for the first output, so that a failing engine still gets a clean 4xx/5xx."""
        self._pending = await self._next()

    async def outputs(self) -> AsyncIterator[EngineOutput]:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            yield pending
        while not self.tally.finished:
            out = await self._next()
            if out is None:
                break
            yield out

    def _status(self) -> Status:
        if self._failed:
            return "error"
        if not self.tally.finished:
            return "aborted"
        reasons = {c.finish_reason for c in self.tally.choices}
        if "abort" in reasons:
            return "aborted"
        return "length" if "length" in reasons else "ok"

    async def settle(self) -> Settled:
        """Settle with what the engine produced; idempotent."""
        if self._settled is None:
            outcome = Outcome(
                usage=self.tally.usage(),
                status=self._status(),
                speculation=self.tally.speculation,
                ttft_s=self._ttft,
                latency_s=time.monotonic() - self._started,
            )
            self._settled = await self._ticket.settle(outcome)
            self._observer.settled(outcome, self._settled)
        return self._settled

    async def _drain(self) -> None:
        """After an abort: collect the outputs the engine produced (and counted) until then."""
        with contextlib.suppress(Exception):  # a failing engine: settle with what we have
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                while not self.tally.finished and await self._next() is not None:
                    pass
        inflight, self._inflight = self._inflight, None
        if inflight is not None and not inflight.done():
            inflight.cancel()
            await asyncio.gather(inflight, return_exceptions=True)

    async def close(self) -> None:
        """Abort if unfinished, drain, then settle. Shielded: runs to the end when cancelled."""
        with anyio.CancelScope(shield=True):
            if not self.tally.finished:
                for request in self.requests:
                    await self._engine.abort(request.request_id)
                await self._drain()
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
            await self.settle()
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
