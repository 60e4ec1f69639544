"""The seam between serving and billing: ``open`` before dispatch, ``settle`` at the end.

``Accounting.open`` reserves the worst case (budget, rate limits, a ledger row) and may
refuse with a 429; the returned ``Ticket`` is settled exactly once with actual usage.
``Admission.admit`` runs before planning and refuses early what ``open`` would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from engine.protocol import SpeculationCounts
from gateway.serving.attribution import NOBODY, Attribution
from gateway.serving.plan import Reservable
from gateway.serving.tally import Usage

Status = Literal["ok", "length", "aborted", "error"]
MIN_PRIORITY, MAX_PRIORITY = 0, 9  # bands of online requests; batch lines run below them


@dataclass(frozen=True)
class Principal:
    """Who is asking: a virtual key and its tenant (``anonymous`` when auth is off)."""

    key_id: str | None
    tenant: str
    is_admin: bool = False
    # Fair share under saturation (serving/queueing.py): the tenant's share of a saturated
    # engine relative to others (in tokens), and the highest priority band its requests
    # may ask for (their default too)
    weight: float = 1.0
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("tenant must not be empty")
        if not self.weight > 0 or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"weight must be > 0 and priority in [{MIN_PRIORITY}, "
                             f"{MAX_PRIORITY}]")


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
                   batch_id: str | None = None, attribution: Attribution = NOBODY) -> Ticket:
        """``batch_id``: a line of that batch (batch prices, recorded on the ledger row);
        ``attribution``: the end user and tags the row keeps (the end user's limits apply)."""
        ...


class Admission(Protocol):
    async def admit(self, principal: Principal, model: str, request_id: str,
                    batch_id: str | None = None, attribution: Attribution = NOBODY) -> None:
        """Before planning: raise what ``Accounting.open`` would raise for any plan of this
        call (403, 429); hold nothing."""
        ...


class _UnmeteredTicket:
    async def settle(self, outcome: Outcome) -> Settled:
        del outcome
        return UNMETERED


class Unmetered:
    """No ledger, no limits: for the gateway's own unit tests and metering-off setups."""

    async def open(self, principal: Principal, plan: Reservable, request_id: str,
                   batch_id: str | None = None, attribution: Attribution = NOBODY) -> Ticket:
        del principal, plan, request_id, batch_id, attribution
        return _UnmeteredTicket()
