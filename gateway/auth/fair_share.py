"""A key's or a tenant's fair share of a saturated model: its ``weight`` (its share of the
tokens served relative to other tenants) and its ``priority`` (the highest band its
requests may ask for, and their default). A key's own values win over its tenant's; a
tenant without them has weight 1 and priority 0 (docs/fair-share.md)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.serving.accounting import MAX_PRIORITY, MIN_PRIORITY, Principal

MAX_WEIGHT = 1000.0
DEFAULT_WEIGHT, DEFAULT_PRIORITY = 1.0, 0
P = TypeVar("P", bound=Principal)


@dataclass(frozen=True)
class Share:
    weight: float | None = None  # None: the tenant's (or 1)
    priority: int | None = None  # None: the tenant's (or 0)

    def __post_init__(self) -> None:
        weight, priority = self.weight, self.priority
        if weight is not None and not (math.isfinite(weight) and 0 < weight <= MAX_WEIGHT):
            raise ValueError(f"weight must be in (0, {MAX_WEIGHT:g}]")
        if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be in [{MIN_PRIORITY}, {MAX_PRIORITY}]")

    def as_json(self) -> dict[str, Any]:
        return {"weight": self.weight, "priority": self.priority}


UNSET = Share()


class ShareRow(Protocol):
    """A key's or a tenant's row (both carry the two columns, migration 0009)."""

    weight: float | None
    priority: int | None


def share_of(row: ShareRow | None) -> Share:
    return UNSET if row is None else Share(row.weight, row.priority)


def share_columns(share: Share) -> dict[str, Any]:
    return {"weight": share.weight, "priority": share.priority}


def with_share(principal: P, key: Share, tenant: Share) -> P:
    """The principal with its effective weight and priority ceiling."""
    weight = key.weight if key.weight is not None else tenant.weight
    priority = key.priority if key.priority is not None else tenant.priority
    return dataclasses.replace(
        principal, weight=DEFAULT_WEIGHT if weight is None else weight,
        priority=DEFAULT_PRIORITY if priority is None else priority)
