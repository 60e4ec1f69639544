"""The gateway's own cap on work in flight (``limits.max_in_flight``), counted in engine
sequences.

Every online request holds one slot from the edge (``InFlightLimitMiddleware``) until its
answer is sent; once planned, it widens its hold to the sequences it really starts (``n``
x prompts), so 16 x 64 sequences count as 1,024, not as one. A request that would pass
the cap waits for nothing: a 503 with ``Retry-After``; one that alone starts more than the
cap could ever hold is a 400 naming the field that multiplies its sequences.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError, ServiceUnavailableError

RETRY_AFTER_S = 1


def over_capacity() -> ServiceUnavailableError:
    return ServiceUnavailableError("The gateway is at capacity; retry shortly.",
                                   code="over_capacity", retry_after=RETRY_AFTER_S)


class InFlight:
    """Slots in use against ``limit``; touched only from the event loop's thread."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.count = 0

    def take(self) -> InFlightHold | None:
        """One slot for a request arriving, or None at the cap."""
        if self.count >= self.limit:
            return None
        self.count += 1
        return InFlightHold(self)


class InFlightHold:
    """One request's slots: one at first, ``widen`` to what it starts; ``release`` all."""

    def __init__(self, gauge: InFlight) -> None:
        self._gauge = gauge
        self.held = 1

    def widen(self, slots: int, param: str) -> None:
        """Hold ``slots`` in all (never fewer than now), or refuse taking nothing more."""
        gauge = self._gauge
        if slots <= self.held:
            return
        if slots > gauge.limit:
            raise InvalidRequestError(
                f"This request starts {slots} sequences at once (n x prompts), more than "
                f"this gateway serves at once ({gauge.limit}); lower {param}.",
                param=param, code="parallel_requests_exceed_limit")
        if gauge.count + slots - self.held > gauge.limit:
            raise over_capacity()
        gauge.count += slots - self.held
        self.held = slots

    def release(self) -> None:
        self._gauge.count -= self.held
        self.held = 0
