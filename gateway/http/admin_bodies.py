"""Request bodies of ``/admin/keys`` and ``/admin/tenants`` (pydantic stays at this edge).

Create bodies give a key's or a tenant's terms; patch bodies change only the fields they
send (``null`` clears one: no budget, no limit, every model, no expiry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from gateway.auth.allowance import Allowance, models_of
from gateway.auth.fair_share import MAX_WEIGHT, UNSET, Share
from gateway.auth.key_records import KeyTerms
from gateway.auth.tenant_store import TenantTerms
from gateway.limits.quota import MAX_BUDGET_USD, MAX_COUNT, Quota
from gateway.serving.accounting import MAX_PRIORITY, MIN_PRIORITY

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MAX_GRACE_S = 30 * 86400


def naive_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


class AllowanceBody(BaseModel):
    """Limits and models, shared by keys and tenants."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: Decimal | None = Field(None, ge=0, le=MAX_BUDGET_USD, decimal_places=12)
    budget_period: Literal["day", "month"] = "month"
    # bounded by what the ledger's columns hold: a larger number is a 400, never a 500
    rpm: int | None = Field(None, ge=1, le=MAX_COUNT)
    tpm: int | None = Field(None, ge=1, le=MAX_COUNT)
    max_parallel_requests: int | None = Field(None, ge=1, le=MAX_COUNT)
    models: list[ModelName] | None = Field(None, min_length=1, max_length=1024)
    metadata: dict[str, Any] | None = None
    # Fair share of a saturated model (docs/fair-share.md); null: the tenant's (a key) or
    # weight 1, priority 0 (a tenant)
    weight: float | None = Field(None, gt=0, le=MAX_WEIGHT)
    priority: int | None = Field(None, ge=MIN_PRIORITY, le=MAX_PRIORITY)

    def share(self, base: Share = UNSET) -> Share:
        """The weight and priority this body gives (a patch: those it sent, over ``base``)."""
        sent = self.model_fields_set
        return Share(self.weight if "weight" in sent else base.weight,
                     self.priority if "priority" in sent else base.priority)

    def allowance(self, base: Allowance | None = None) -> Allowance:
        """The allowance this body gives; a patch starts from ``base``, changing only the
        fields it sent."""
        if base is None:
            return Allowance(Quota(self.rpm, self.tpm, self.budget_usd, self.budget_period),
                             models_of(self.models), self.max_parallel_requests)
        sent, quota = self.model_fields_set, base.quota
        return Allowance(
            Quota(rpm=self.rpm if "rpm" in sent else quota.rpm,
                  tpm=self.tpm if "tpm" in sent else quota.tpm,
                  budget_usd=self.budget_usd if "budget_usd" in sent else quota.budget_usd,
                  budget_period=(self.budget_period if "budget_period" in sent
                                 else quota.budget_period)),
            models_of(self.models) if "models" in sent else base.models,
            (self.max_parallel_requests if "max_parallel_requests" in sent
             else base.max_parallel),
            base.revision)


class KeyCreateBody(AllowanceBody):
    tenant: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=128)
    expires_at: AwareDatetime | None = None  # RFC 3339, with its offset
    response_cache: bool | None = None  # repeatable requests may be answered from the cache

    def terms(self) -> KeyTerms:
        return KeyTerms(self.allowance(), self.name, naive_utc(self.expires_at),
                        self.metadata or {}, self.response_cache, self.share())


class KeyPatchBody(AllowanceBody):
    name: str | None = Field(None, max_length=128)
    expires_at: AwareDatetime | None = None
    response_cache: bool | None = None

    def apply(self, terms: KeyTerms) -> KeyTerms:
        sent = self.model_fields_set
        return KeyTerms(
            self.allowance(terms.allowance),
            self.name if "name" in sent else terms.name,
            naive_utc(self.expires_at) if "expires_at" in sent else terms.expires_at,
            (self.metadata or {}) if "metadata" in sent else terms.metadata,
            self.response_cache if "response_cache" in sent else terms.response_cache,
            self.share(terms.share))


def tenant_terms(body: TenantCreateBody) -> TenantTerms:
    """A new tenant's terms, its fair share included."""
    return dataclasses.replace(body.terms(), share=body.share())


def tenant_patch(body: TenantPatchBody) -> Callable[[TenantTerms], TenantTerms]:
    """What a patch does to a tenant's terms, its fair share included."""
    return lambda terms: dataclasses.replace(body.apply(terms), share=body.share(terms.share))


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_s: float = Field(0, ge=0, le=MAX_GRACE_S)  # the old secret's last seconds


class EndUserBody(AllowanceBody):
    """A tenant's limits on each of its end users (the requests' ``user``), each on its own."""

    end_user_budget_usd: Decimal | None = Field(None, ge=0, le=MAX_BUDGET_USD,
                                                decimal_places=12)
    end_user_budget_period: Literal["day", "month"] = "month"
    end_user_rpm: int | None = Field(None, ge=1, le=MAX_COUNT)

    def end_user(self, base: Quota | None = None) -> Quota:
        sent = self.model_fields_set if base is not None else set(type(self).model_fields)
        base = base or Quota()
        return Quota(
            rpm=self.end_user_rpm if "end_user_rpm" in sent else base.rpm,
            budget_usd=(self.end_user_budget_usd if "end_user_budget_usd" in sent
                        else base.budget_usd),
            budget_period=(self.end_user_budget_period if "end_user_budget_period" in sent
                           else base.budget_period))


class TenantCreateBody(EndUserBody):
    name: str = Field(min_length=1, max_length=128)

    def terms(self) -> TenantTerms:
        return TenantTerms(self.allowance(), self.metadata or {}, self.end_user())


class TenantPatchBody(EndUserBody):
    def apply(self, terms: TenantTerms) -> TenantTerms:
        sent = self.model_fields_set
        return TenantTerms(self.allowance(terms.allowance),
                           (self.metadata or {}) if "metadata" in sent else terms.metadata,
                           self.end_user(terms.end_user))
