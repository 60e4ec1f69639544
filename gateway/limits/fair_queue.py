"""A weighted fair queue over tokens, with priority bands, in front of one model's engine.

The queue admits requests while the engine has seats (``capacity`` engine sequences, or the
engine says it already queues) and holds the rest. It serves the highest priority band
first; inside a band it serves tenants by start-time fair queuing (SFQ) over tokens: each
request gets a start tag ``max(virtual time, its tenant's last finish tag)`` and moves its
tenant's finish tag by ``cost / weight`` (cost: prompt + max tokens x choices). The smallest
start tag goes first, and the virtual time is the start tag of the last request admitted.
When a request ends, its tenant's finish tag is corrected by what it really used, so a
tenant's share is measured in tokens served, not tokens asked for.

Reserved seats: without preemption in the engine, a request that finds every seat taken
waits for the next one to end, however light its tenant. So ``reserve`` seats are held
back: a tenant fills them only while it holds less than its weighted share of the engine
and another tenant is active (a lone tenant never gets them, so they are free when a
second one arrives). A light tenant's request then starts at once, even past heavier
tenants' waiting ones; the cost is ``reserve`` idle seats while one tenant saturates.

A request not admitted by its deadline gets a 429 ``queue_timeout`` with ``Retry-After``;
one whose client goes away while it waits leaves at once, charged nothing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.errors import GatewayError, RateLimitError
from gateway.limits.queue_stats import QueueStats

Clock = Callable[[], float]
Disconnected = Callable[[], Awaitable[bool]]
POLL_S = 0.25  # how often a waiting request checks its deadline and its client
MAX_RETRY_AFTER_S = 30.0


class QueueTimeoutError(RateLimitError):
    default_code = "queue_timeout"


class ClientGoneError(GatewayError):
    """The client hung up while its request waited (nginx's 499): nothing to answer."""

    status_code = 499
    error_type = "invalid_request_error"
    default_code = "client_closed_request"


@dataclass(frozen=True)
class QueueClaim:
    """What one request asks of the queue."""

    flow: str  # whose share it counts against: the tenant
    cost: int  # tokens it may use: prompt + max tokens x choices
    seats: int = 1  # engine sequences it starts at once
    weight: float = 1.0  # its flow's share relative to the others
    band: int = 0  # higher bands are served first; batch lines use the lowest

    def __post_init__(self) -> None:
        if not self.flow or self.cost < 1 or self.seats < 1 or not self.weight > 0:
            raise ValueError("a claim needs a flow, a cost and seats >= 1, a weight > 0")


@dataclass(eq=False)
class _Waiter:
    claim: QueueClaim
    start: float
    since: float
    granted: asyncio.Future[Seat] = field(default_factory=asyncio.Future)
    gone: bool = False


class Seat:
    """An admitted request's seats; ``release`` once when its engine work ends."""

    def __init__(self, queue: FairQueue, claim: QueueClaim) -> None:
        self._queue = queue
        self.claim = claim
        self._released = False

    def release(self, used_tokens: int | None = None) -> None:
        """Free the seats; ``used_tokens`` (None: the claim's cost) corrects the share."""
        if not self._released:
            self._released = True
            self._queue._release(self.claim, self.claim.cost if used_tokens is None
                                 else used_tokens)


class FairQueue:
    """Touched only from the event loop's thread."""

    def __init__(self, capacity: int | Callable[[], int], timeout_s: float, *,
                 clock: Clock = time.monotonic, busy: Callable[[], bool] | None = None,
                 reserve: float = 0.0) -> None:
        """``capacity``: engine sequences at once, or how to read it (replicas come and go);
        ``reserve``: the fraction of it held back for tenants below their share."""
        if (isinstance(capacity, int) and capacity < 1) or not timeout_s > 0:
            raise ValueError("a queue needs a capacity >= 1 and a timeout > 0")
        if not 0 <= reserve < 1:
            raise ValueError("the reserve is a fraction of the seats, from 0 to below 1")
        self._capacity = capacity
        self._reserve = reserve
        self._held: dict[str, int] = {}  # seats each tenant holds now
        self._weights: dict[str, float] = {}  # of the tenants holding or waiting
        self._flows: dict[str, deque[_Waiter]] = {}  # each tenant's waiters, oldest first
        self.timeout_s = timeout_s
        self._clock = clock
        self._busy = busy  # the engine queues already (its own waiting count), if it says
        self.in_use = 0
        self._vtime = 0.0
        self._finish: dict[str, float] = {}
        self._bands: dict[int, list[tuple[float, int, _Waiter]]] = {}
        self._order = itertools.count()
        self.depth = 0  # requests waiting
        self.stats = QueueStats()

    @property
    def capacity(self) -> int:
        capacity = self._capacity
        return max(1, capacity if isinstance(capacity, int) else capacity())

    def _tag(self, claim: QueueClaim) -> float:
        start = max(self._vtime, self._finish.get(claim.flow, 0.0))
        self._finish[claim.flow] = start + claim.cost / claim.weight
        return start

    @property
    def reserved(self) -> int:
        """Seats only tenants below their share may fill: the nearest whole number (so a small
        engine holds none back), and never the last seat."""
        capacity = self.capacity
        return min(capacity - 1, math.floor(self._reserve * capacity + 0.5))

    def _under_share(self, claim: QueueClaim) -> bool:
        """Whether ``claim``'s tenant holds less than its weighted share while others are
        active (holding seats or waiting)."""
        active = self._weights.keys() | {claim.flow}
        if len(active) < 2:
            return False
        total = sum(self._weights.get(f, claim.weight) for f in active)
        share = self.capacity * claim.weight / total
        return self._held.get(claim.flow, 0) + claim.seats <= max(1.0, share)

    def _free_for(self, claim: QueueClaim) -> bool:
        if self.in_use == 0:
            return True  # a request wider than the engine still runs, alone
        room = self.capacity - self.in_use - claim.seats
        if room < 0 or (room < self.reserved and not self._under_share(claim)):
            return False
        return self._busy is None or not self._busy()

    async def acquire(self, claim: QueueClaim, timeout_s: float | None = None,
                      disconnected: Disconnected | None = None) -> Seat:
        """Seats for ``claim``: at once when free and nobody waits, else in fair order."""
        now = self._clock()
        if self.depth == 0 and self._free_for(claim):
            self._vtime = max(self._vtime, self._tag(claim))
            return self._admit(claim, waited_s=0.0)
        waiter = _Waiter(claim, self._tag(claim), now)
        heapq.heappush(self._bands.setdefault(claim.band, []),
                       (waiter.start, next(self._order), waiter))
        self._flows.setdefault(claim.flow, deque()).append(waiter)
        self._weights[claim.flow] = claim.weight
        self.depth += 1
        self.stats.queued(claim.flow)
        self._pump()  # a light tenant may take a reserved seat past heavier waiters
        deadline = now + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            return await self._wait(waiter, deadline, disconnected)
        except BaseException:
            self._leave(waiter)
            raise

    async def _wait(self, waiter: _Waiter, deadline: float,
                    disconnected: Disconnected | None) -> Seat:
        while True:
            remaining = deadline - self._clock()
            if not waiter.granted.done() and remaining > 0:
                await asyncio.wait({waiter.granted}, timeout=min(POLL_S, remaining))
            if waiter.granted.done():
                return waiter.granted.result()
            if self._clock() >= deadline:
                self.stats.timed_out(waiter.claim.flow)
                raise QueueTimeoutError(
                    "The model is saturated and this request waited its turn past "
                    f"{deadline - waiter.since:.0f} s; retry later.",
                    retry_after=min(MAX_RETRY_AFTER_S, max(1.0, deadline - waiter.since)))
            if disconnected is not None and await disconnected():
                self.stats.abandoned(waiter.claim.flow)
                raise ClientGoneError("client closed the request while it was queued")

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter that gives up: out of the queue, its tenant's share given back."""
        granted = waiter.granted
        if granted.done() and not granted.cancelled():
            granted.result().release(0)  # admitted as it left: free the seats at once
            return
        granted.cancel()
        self._dequeue(waiter)
        claim = waiter.claim
        if claim.flow in self._finish:
            self._finish[claim.flow] -= claim.cost / claim.weight
        self._pump()

    def _head(self) -> tuple[int, _Waiter] | None:
        for band in sorted(self._bands, reverse=True):
            heap = self._bands[band]
            while heap and heap[0][2].gone:
                heapq.heappop(heap)
            if heap:
                return band, heap[0][2]
            del self._bands[band]
        return None

    def _below_share(self) -> _Waiter | None:
        """The first waiter, highest band first, of a tenant below its share."""
        firsts = []
        for waiters in self._flows.values():
            while waiters and waiters[0].gone:
                waiters.popleft()
            if waiters and self._under_share(waiters[0].claim):
                firsts.append(waiters[0])
        return min(firsts, key=lambda w: (-w.claim.band, w.start), default=None)

    def _pump(self) -> None:
        """Admit waiters in order while the engine has seats for the next one; then, into
        the reserved seats, those of tenants below their share."""
        while (head := self._head()) is not None:
            waiter = head[1]
            if not self._free_for(waiter.claim):
                light = self._below_share()
                if light is None or not self._free_for(light.claim):
                    return
                waiter = light
            self._dequeue(waiter)
            self._vtime = max(self._vtime, waiter.start)
            waiter.granted.set_result(self._admit(waiter.claim, self._clock() - waiter.since))

    def _dequeue(self, waiter: _Waiter) -> None:
        """Out of the queue (its heap entry is dropped lazily, as ``gone``)."""
        waiter.gone = True
        self.depth -= 1
        flow = waiter.claim.flow
        self.stats.left(flow)
        waiters = self._flows.get(flow)
        if waiters is not None:
            while waiters and waiters[0].gone:
                waiters.popleft()
            if not waiters:
                del self._flows[flow]
        self._forget(flow)

    def _forget(self, flow: str) -> None:
        if flow not in self._flows and not self._held.get(flow):
            self._weights.pop(flow, None)
            self._held.pop(flow, None)

    def _admit(self, claim: QueueClaim, waited_s: float) -> Seat:
        self.in_use += claim.seats
        self._held[claim.flow] = self._held.get(claim.flow, 0) + claim.seats
        self._weights[claim.flow] = claim.weight
        self.stats.admitted(claim.flow, waited_s)
        return Seat(self, claim)

    def _release(self, claim: QueueClaim, used_tokens: int) -> None:
        self.in_use -= claim.seats
        self._held[claim.flow] -= claim.seats
        self._forget(claim.flow)
        self.stats.served(claim.flow, used_tokens)
        if claim.flow in self._finish:
            self._finish[claim.flow] += (used_tokens - claim.cost) / claim.weight
            if self._finish[claim.flow] <= self._vtime:
                del self._finish[claim.flow]  # behind the clock: same as starting afresh
        self._pump()

    def retry(self) -> None:
        """Admit again after the engine's own queue drained (``busy`` turned false)."""
        self._pump()
