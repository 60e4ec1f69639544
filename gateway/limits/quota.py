"""What a key or tenant may use (``Quota``), who a request is held against (``Claim``),
what it holds (``Demand``, ``Hold``), and the fixed windows the counters live in.

A request is held against every claim at once (its key's, its tenant's): all of them
must fit, so the stricter limit wins. Budgets are counted in nano-dollars (1e-9 USD),
rounded up, so a limiter never lets spend pass a budget through rounding; the ledger
keeps exact pico-dollar costs.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Literal, Protocol

Period = Literal["day", "month"]
PERIODS: tuple[Period, ...] = ("day", "month")
Scope = Literal["key", "tenant", "user"]
WINDOW_S = 60  # RPM and TPM use fixed one-minute windows
MAX_COUNT = 2**31 - 1  # RPM, TPM, parallel requests: the ledger's INTEGER columns hold them
# Budgets are held as nano-dollars in Redis's Lua numbers (exact below 2**53): 1e15 fits.
MAX_BUDGET_USD = Decimal(1_000_000)


def to_nano_ceil(usd: Decimal) -> int:
    return int(usd.scaleb(9).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Quota:
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: Decimal | None = None
    budget_period: Period = "month"

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_COUNT:
                raise ValueError(f"{name} must be between 1 and {MAX_COUNT}")
        if self.budget_usd is not None and (not self.budget_usd.is_finite()
                                            or not 0 <= self.budget_usd <= MAX_BUDGET_USD):
            raise ValueError(f"budget_usd must be an amount from 0 to {MAX_BUDGET_USD}")
        if self.budget_period not in PERIODS:
            raise ValueError(f"budget_period must be one of {PERIODS}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.budget_usd is None

    @property
    def budget_nano(self) -> int | None:
        return None if self.budget_usd is None else int(self.budget_usd.scaleb(9))


UNLIMITED = Quota()


@dataclass(frozen=True)
class Subject:
    """Whose counters: a key (by id), a tenant (by name) or an end user (the requests'
    ``user``) of the tenant ``owner``."""

    scope: Scope
    name: str
    owner: str | None = None  # an end user's tenant

    def __post_init__(self) -> None:
        if self.scope not in ("key", "tenant", "user") or not self.name:
            raise ValueError("a subject is a key, a tenant or an end user with a name")
        if (self.scope == "user") != (self.owner is not None):
            raise ValueError("an end user, and only an end user, has its tenant as owner")

    @property
    def label(self) -> str:
        """For messages: ``key``, ``tenant`` or ``end user`` (never a name)."""
        return "end user" if self.scope == "user" else self.scope

    @property
    def id(self) -> str:
        """Unique across scopes: a key's id, ``tenant:<name>`` or ``user:<tenant>:<name>``."""
        if self.scope == "user":
            return f"user:{self.owner}:{self.name}"
        return self.name if self.scope == "key" else f"tenant:{self.name}"


@dataclass(frozen=True)
class Claim:
    """One party's limits a request is held against. ``revision`` changes whenever the
    limits are edited, so a budget counter is seeded afresh from the ledger after a change."""

    subject: Subject
    quota: Quota = UNLIMITED
    max_parallel: int | None = None
    revision: int = 0

    def __post_init__(self) -> None:
        if self.max_parallel is not None and not 1 <= self.max_parallel <= MAX_COUNT:
            raise ValueError(f"max_parallel must be between 1 and {MAX_COUNT}")

    @property
    def limited(self) -> bool:
        return not self.quota.unlimited or self.max_parallel is not None


@dataclass(frozen=True)
class Charge:
    """What one request holds: worst-case tokens and cost (nano-dollars, rounded up)."""

    tokens: int
    cost_nano: int

    def __post_init__(self) -> None:
        if self.tokens < 0 or self.cost_nano < 0:
            raise ValueError("a charge cannot be negative")


@dataclass(frozen=True)
class Demand:
    """One request's charge against its claims. ``group`` (the tenant) puts every counter
    of one demand in one Redis hash slot, so one script can check them all. ``slots``: the
    parallel slots it holds, one per engine sequence it starts (``n`` x prompts)."""

    request_id: str
    group: str
    charge: Charge
    claims: tuple[Claim, ...]
    slots: int = 1

    def __post_init__(self) -> None:
        if not self.request_id or not self.group:
            raise ValueError("a demand needs a request id and a group")
        if not self.claims:
            raise ValueError("a demand needs at least one claim")
        if not 1 <= self.slots <= MAX_COUNT:
            raise ValueError(f"a demand holds 1 to {MAX_COUNT} parallel slots")


@dataclass(frozen=True)
class Windows:
    """The counters a request at ``now`` lands in, and when each one ends."""

    minute: int
    minute_ends: float
    period_id: str
    period_starts: datetime
    period_ends: float

    @classmethod
    def at(cls, now: float, period: Period) -> Windows:
        minute = int(now // WINDOW_S)
        moment = datetime.fromtimestamp(now, UTC)
        if period == "day":
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            ends = start.timestamp() + 86400
            period_id = start.strftime("%Y-%m-%d")
        else:
            start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            days = calendar.monthrange(start.year, start.month)[1]
            ends = start.timestamp() + days * 86400
            period_id = start.strftime("%Y-%m")
        return cls(minute, (minute + 1) * WINDOW_S, period_id, start.replace(tzinfo=None),
                   ends)


@dataclass(frozen=True)
class Hold:
    """A granted demand and the windows of each of its claims; ``settle`` releases the
    unused part and the request's parallel slots."""

    demand: Demand
    windows: tuple[Windows, ...]

    def __post_init__(self) -> None:
        if len(self.windows) != len(self.demand.claims):
            raise ValueError("one window set per claim")


def windows_of(demand: Demand, now: float) -> tuple[Windows, ...]:
    return tuple(Windows.at(now, claim.quota.budget_period) for claim in demand.claims)


def retry_after(ends: float, now: float) -> int:
    return max(1, math.ceil(ends - now))


class SpendSeed(Protocol):
    """Committed spend (nano-dollars) of a subject since a period began, from the ledger."""

    async def __call__(self, subject: Subject, since: datetime) -> int: ...


class Limiter(Protocol):
    async def admit(self, demand: Demand, now: float) -> None:
        """Raise the 429 ``reserve`` would raise now for a charge this small or larger
        (the least any request holds: checked before planning); hold nothing."""
        ...

    async def reserve(self, demand: Demand, now: float) -> Hold:
        """Hold the charge against every claim at once, or raise a 429 and hold nothing."""
        ...

    async def settle(self, hold: Hold, tokens: int, cost_nano: int) -> None:
        """Replace the held worst case by the actual tokens and cost; free the slots."""
        ...

    async def close(self) -> None: ...
