"""What a key or a tenant may use: budget and rate limits, models, requests in parallel.

A key's allowance and its tenant's both apply to every request: a model must be in both
lists (no list: every model), and the request is held against both sets of limits (the
stricter wins). ``revision`` counts edits, so limiters seed a budget afresh after one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from gateway.limits.quota import MAX_COUNT, UNLIMITED, Claim, Quota, Subject
from gateway.metering.pricing import from_pico, to_pico, usd_text

RESERVED_TENANTS = frozenset({"admin", "anonymous"})  # the admin's and auth-off requests
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_MODEL_NAME = 128
MAX_METADATA_BYTES = 4096

Metadata = Mapping[str, Any]


def check_tenant_name(name: str) -> str:
    """A tenant name: 1-128 letters, digits, ``.``, ``_`` or ``-``; not a reserved one."""
    if not _TENANT_NAME.fullmatch(name):
        raise ValueError("a tenant name has 1 to 128 characters: letters, digits, '.', '_', "
                         "'-', starting with a letter or digit")
    if name.lower() in RESERVED_TENANTS:
        raise ValueError(f"{name!r} is a reserved tenant name")
    return name


def check_metadata(metadata: Metadata) -> Metadata:
    """Free-form JSON object for operators, at most 4 KiB once serialised."""
    if not all(isinstance(k, str) for k in metadata):
        raise ValueError("metadata keys are strings")
    if len(json.dumps(metadata, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is limited to {MAX_METADATA_BYTES} bytes of JSON")
    return metadata


@dataclass(frozen=True)
class Allowance:
    quota: Quota = UNLIMITED
    models: frozenset[str] | None = None  # None: every model
    max_parallel: int | None = None
    revision: int = 0

    def __post_init__(self) -> None:
        if self.models is not None:
            if not self.models:
                raise ValueError("models lists at least one model (leave it out for all)")
            if any(not m or len(m) > MAX_MODEL_NAME for m in self.models):
                raise ValueError(f"a model name has 1 to {MAX_MODEL_NAME} characters")
        if self.max_parallel is not None and not 1 <= self.max_parallel <= MAX_COUNT:
            raise ValueError(f"max_parallel_requests must be between 1 and {MAX_COUNT}")
        if self.revision < 0:
            raise ValueError("revision must be >= 0")

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def claim(self, subject: Subject) -> Claim | None:
        """The limits a request is held against, or None when there are none."""
        claim = Claim(subject, self.quota, self.max_parallel, self.revision)
        return claim if claim.limited else None

    def as_json(self) -> dict[str, Any]:
        budget = self.quota.budget_usd
        return {
            "budget_usd": None if budget is None else usd_text(budget),
            "budget_period": self.quota.budget_period,
            "rpm": self.quota.rpm, "tpm": self.quota.tpm,
            "max_parallel_requests": self.max_parallel,
            "models": None if self.models is None else sorted(self.models),
        }


OPEN = Allowance()


def models_of(names: Iterable[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


class AllowanceRow(Protocol):
    """The columns a key's and a tenant's row share."""

    budget_pico: int | None
    budget_period: str
    rpm: int | None
    tpm: int | None
    max_parallel_requests: int | None
    models_json: str | None
    revision: int


def allowance_of(row: AllowanceRow) -> Allowance:
    budget = None if row.budget_pico is None else Decimal(usd_text(from_pico(row.budget_pico)))
    quota = Quota(rpm=row.rpm, tpm=row.tpm, budget_usd=budget,
                  budget_period="day" if row.budget_period == "day" else "month")
    models = None if row.models_json is None else frozenset(json.loads(row.models_json))
    return Allowance(quota, models, row.max_parallel_requests, row.revision)


def allowance_columns(allowance: Allowance) -> dict[str, Any]:
    """The row's columns for ``allowance`` (its revision is the store's business)."""
    quota = allowance.quota
    models = allowance.models
    return {
        "budget_pico": None if quota.budget_usd is None else to_pico(quota.budget_usd),
        "budget_period": quota.budget_period, "rpm": quota.rpm, "tpm": quota.tpm,
        "max_parallel_requests": allowance.max_parallel,
        "models_json": None if models is None else json.dumps(sorted(models)),
    }


class EndUserRow(Protocol):
    """A tenant's limits on each of its end users (the requests' ``user``)."""

    end_user_budget_pico: int | None
    end_user_budget_period: str
    end_user_rpm: int | None


def end_user_quota_of(row: EndUserRow) -> Quota:
    pico = row.end_user_budget_pico
    budget = None if pico is None else Decimal(usd_text(from_pico(pico)))
    return Quota(rpm=row.end_user_rpm, budget_usd=budget,
                 budget_period="day" if row.end_user_budget_period == "day" else "month")


def end_user_columns(quota: Quota) -> dict[str, Any]:
    budget = quota.budget_usd
    return {"end_user_budget_pico": None if budget is None else to_pico(budget),
            "end_user_budget_period": quota.budget_period, "end_user_rpm": quota.rpm}


def end_user_json(quota: Quota) -> dict[str, Any]:
    budget = quota.budget_usd
    return {"end_user_budget_usd": None if budget is None else usd_text(budget),
            "end_user_budget_period": quota.budget_period, "end_user_rpm": quota.rpm}
