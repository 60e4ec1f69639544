"""The gateway's queue in front of each model's engine: fair share under saturation.

Each model served by our engines (embedded or remote replicas) with ``seats`` gets a
``FairQueue``: it admits requests while the engine has seats (``max_num_seqs`` x its
healthy replicas; remote replicas also while they report no queue of their own) and holds
the rest in priority bands, tenants served by weighted fair queuing over tokens; a few seats
(``limits.queue_reserve``) are kept for tenants below their share. A request
takes its seats after the response cache (a hit runs no engine) and before its ticket is
opened: one that times out or whose client leaves while queued has no ledger row, so it is
billed nothing. Its seats are freed when its ticket is settled, with the tokens it used.

Bands: online requests use their key's ``priority`` (0-9, higher first; a request may ask
for less), batch lines run below every online band. The band reaches the engine as vLLM's
``priority`` (lower runs first) where the engine schedules by priority.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Iterator

from gateway.errors import InvalidRequestError
from gateway.limits.fair_queue import Clock, Disconnected, FairQueue, QueueClaim, Seat
from gateway.serving.accounting import MAX_PRIORITY, Outcome, Principal, Settled, Ticket
from gateway.serving.plan import GenerationPlan
from gateway.serving.planning.embeddings import EmbeddingPlan
from gateway.serving.registry import ServedModel

BATCH_BAND = -1  # batch lines: behind every online request
PRIORITY_HEADER = "x-llmgw-priority"  # a request's band, up to its key's (0-9)


def requested_priority(header: str | None) -> int | None:
    """The band a request asks for in its header (None: its key's); 400 unless 0-9."""
    if header is None:
        return None
    value = header.strip()
    if not (value.isascii() and value.isdigit()) or not 0 <= int(value) <= MAX_PRIORITY:
        raise InvalidRequestError(f"{PRIORITY_HEADER} must be an integer from 0 to "
                                  f"{MAX_PRIORITY}", param=PRIORITY_HEADER)
    return int(value)


def band_of(principal: Principal, requested: int | None, batch: bool) -> int:
    """The request's band: the key's ceiling unless it asks for less; batch lines lowest."""
    if batch:
        return BATCH_BAND
    ceiling = min(principal.priority, MAX_PRIORITY)
    return ceiling if requested is None else max(0, min(requested, ceiling))


def engine_priority(band: int) -> int:
    """vLLM's ``priority`` for a band: lower values are scheduled (and kept) first."""
    return -band


def claim_of(principal: Principal, plan: GenerationPlan | EmbeddingPlan,
             band: int) -> QueueClaim:
    """An embedding holds a seat per input while the engine pools them (its batch of
    sequences), a generation its sequences until they end."""
    seats = len(plan.inputs) if isinstance(plan, EmbeddingPlan) else plan.sequences
    return QueueClaim(principal.tenant, plan.worst_case_tokens, seats=seats,
                      weight=principal.weight, band=band)


class ModelQueues:
    """One fair queue per model that has ``seats``: generating or pooling on our engines, or
    relayed to an upstream that declares them; the others are not queued."""

    def __init__(self, models: Iterable[ServedModel], timeout_s: float,
                 batch_timeout_s: float | None = None, clock: Clock = time.monotonic,
                 reserve: float = 0.0, relays: Iterable[tuple[str, int]] = ()) -> None:
        """``relays``: upstream models with the seats this gateway may hold at once."""
        self._batch_timeout_s = batch_timeout_s
        self._queues = {m.name: _queue(m, timeout_s, clock, reserve) for m in models
                        if m.seats is not None}
        self._queues |= {name: FairQueue(seats, timeout_s, clock=clock, reserve=reserve)
                         for name, seats in relays}

    def get(self, model: str) -> FairQueue | None:
        return self._queues.get(model)

    def __iter__(self) -> Iterator[tuple[str, FairQueue]]:
        return iter(self._queues.items())

    async def seat(self, model: str, principal: Principal, plan: GenerationPlan | EmbeddingPlan,
                   band: int, disconnected: Disconnected | None = None) -> Seat | None:
        """The plan's seats on ``model`` (None: that model is not queued). Batch lines wait
        as long as a stream may last (their worker retries a 429 later anyway)."""
        queue = self._queues.get(model)
        if queue is None:
            return None
        timeout_s = self._batch_timeout_s if band == BATCH_BAND else None
        return await queue.acquire(claim_of(principal, plan, band), timeout_s, disconnected)

    async def ticket(self, seat: Seat | None, opening: Awaitable[Ticket]) -> Ticket:
        """The ticket opened for a seated request, freeing the seat when settled (or at
        once when opening it fails)."""
        if seat is None:
            return await opening
        try:
            inner = await opening
        except BaseException:
            seat.release(0)
            raise
        return SeatedTicket(inner, seat)


def _queue(model: ServedModel, timeout_s: float, clock: Clock, reserve: float) -> FairQueue:
    seats = model.seats
    assert seats is not None
    if not hasattr(model.engine, "replicas"):  # one engine, in this process: all ours
        return FairQueue(seats, timeout_s, clock=clock, reserve=reserve)
    engine = model.engine

    def capacity() -> int:
        return seats * max(1, sum(1 for r in getattr(engine, "replicas", ()) if r.healthy))

    def busy() -> bool:  # other gateways share the replicas: their own queue counts too
        return engine.stats().waiting > 0

    return FairQueue(capacity, timeout_s, clock=clock, busy=busy, reserve=reserve)


class SeatedTicket:
    """A ticket whose settlement frees the request's seats first, with what it used."""

    def __init__(self, inner: Ticket, seat: Seat) -> None:
        self._inner = inner
        self._seat = seat

    async def settle(self, outcome: Outcome) -> Settled:
        usage = outcome.usage
        self._seat.release(usage.prompt_tokens + usage.completion_tokens)
        return await self._inner.settle(outcome)
