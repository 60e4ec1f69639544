"""The seam between serving and billing: ``open`` before dispatch, ``settle`` at the end.

``Accounting.open`` reserves the worst case (budget, rate limits, a ledger row) and may
refuse with a 429; the returned ``Ticket`` is settled exactly once with actual usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from engine.protocol import SpeculationCounts
from gateway.serving.plan import Reservable
from gateway.serving.tally import Usage

Status = Literal["ok", "length", "aborted", "error"]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a virtual key and its tenant (``anonymous`` when auth is off)."""

    key_id: str | None
    tenant: str
    is_admin: bool = False

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("tenant must not be empty")


ANONYMOUS = Principal(key_id=None, tenant="anonymous")


@dataclass(frozen=True)
class Outcome:
    usage: Usage
    status: Status
    speculation: SpeculationCounts | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    estimated: bool = False  # tokens counted with tiktoken, not reported (upstream models)
    response_cached: bool = False  # replayed from the response cache: no engine ran
    prompt_only: bool = False  # an embedding: the prompt is all there is to bill


@dataclass(frozen=True)
class Settled:
    """What settling a ticket billed: the exact cost (None when nothing is metered)."""

    cost: Decimal | None = None

    def __post_init__(self) -> None:
        if self.cost is not None and (not self.cost.is_finite() or self.cost < 0):
            raise ValueError("a cost is a finite, non-negative amount")


UNMETERED = Settled()


class Ticket(Protocol):
    async def settle(self, outcome: Outcome) -> Settled:
        """Record the outcome, once; later calls return the first settlement."""
        ...


class Accounting(Protocol):
    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None) -> Ticket:
        """``batch_id``: a line of that batch (batch prices, recorded on the ledger row)."""
        ...


class _UnmeteredTicket:
    async def settle(self, outcome: Outcome) -> Settled:
        del outcome
        return UNMETERED


class Unmetered:
    """No ledger, no limits: for the gateway's own unit tests and metering-off setups."""

    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None) -> Ticket:
        del principal, plan, request_id, batch_id
        return _UnmeteredTicket()
