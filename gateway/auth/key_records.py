"""A virtual key as the rest of the gateway sees it: its editable terms and its record.

``KeyTerms`` is what an operator sets and edits (models, limits, expiry, metadata);
``KeyRecord`` adds what the store keeps (tenant, timestamps, rotation), never a secret.
``KeyPrincipal`` is a caller holding a live key, with its own and its tenant's allowance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.auth.allowance import (
    OPEN,
    Allowance,
    Metadata,
    allowance_columns,
    allowance_of,
    check_metadata,
)
from gateway.auth.fair_share import UNSET, Share, share_columns, share_of
from gateway.limits.quota import UNLIMITED, Claim, Quota, Subject
from gateway.metering.tables import ApiKeyRow
from gateway.serving.accounting import Principal

MAX_NAME = 128


def stamp(moment: datetime | None) -> str | None:
    """A naive UTC time as RFC 3339."""
    return None if moment is None else moment.isoformat() + "Z"


@dataclass(frozen=True)
class KeyPrincipal(Principal):
    """A caller holding a live virtual key: the key's allowance and its tenant's."""

    allowance: Allowance = OPEN
    tenant_allowance: Allowance = OPEN
    response_cache: bool | None = None  # the key's response-cache policy (None: default)
    end_user_quota: Quota = UNLIMITED  # the tenant's limits on each of its end users

    @property
    def quota(self) -> Quota:
        return self.allowance.quota

    def may_use(self, model: str) -> bool:
        return self.allowance.may_use(model) and self.tenant_allowance.may_use(model)

    def claims(self, end_user: str | None = None) -> tuple[Claim, ...]:
        """What a request is held against: the key's limits, its tenant's and the tenant's
        limits on the request's end user (if any), in one atomic check."""
        assert self.key_id is not None, "a key principal has a key id"
        found = (self.allowance.claim(Subject("key", self.key_id)),
                 self.tenant_allowance.claim(Subject("tenant", self.tenant)))
        claims = tuple(claim for claim in found if claim is not None)
        if end_user is None or self.end_user_quota.unlimited:
            return claims
        user = Subject("user", end_user, owner=self.tenant)
        return (*claims, Claim(user, self.end_user_quota,
                               revision=self.tenant_allowance.revision))


def may_use(principal: Principal, model: str) -> bool:
    """Whether ``principal`` may call ``model`` (the admin and auth-off callers may)."""
    return not isinstance(principal, KeyPrincipal) or principal.may_use(model)


@dataclass(frozen=True)
class KeyTerms:
    allowance: Allowance = OPEN
    name: str | None = None
    expires_at: datetime | None = None  # naive UTC; None: never
    metadata: Metadata = field(default_factory=dict)
    response_cache: bool | None = None
    share: Share = UNSET  # its weight and priority (None each: its tenant's)

    def __post_init__(self) -> None:
        if self.name is not None and len(self.name) > MAX_NAME:
            raise ValueError(f"name has at most {MAX_NAME} characters")
        if self.expires_at is not None and self.expires_at.tzinfo is not None:
            raise ValueError("expires_at is stored as naive UTC")
        check_metadata(self.metadata)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant: str
    created_at: datetime
    revoked_at: datetime | None
    terms: KeyTerms = KeyTerms()
    rotated_at: datetime | None = None
    previous_valid_until: datetime | None = None  # the replaced secret's grace period

    @property
    def name(self) -> str | None:
        return self.terms.name

    @property
    def quota(self) -> Quota:
        return self.terms.allowance.quota

    @property
    def response_cache(self) -> bool | None:
        return self.terms.response_cache

    def expired(self, now: datetime) -> bool:
        return self.terms.expires_at is not None and self.terms.expires_at <= now

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and not self.expired(now)

    def principal(self, tenant_allowance: Allowance = OPEN,
                  end_user_quota: Quota = UNLIMITED) -> KeyPrincipal:
        return KeyPrincipal(key_id=self.key_id, tenant=self.tenant,
                            allowance=self.terms.allowance,
                            tenant_allowance=tenant_allowance,
                            response_cache=self.terms.response_cache,
                            end_user_quota=end_user_quota)

    def as_json(self) -> dict[str, object]:
        terms = self.terms
        return {
            "id": self.key_id, "tenant": self.tenant, "name": terms.name,
            "created_at": stamp(self.created_at), "revoked_at": stamp(self.revoked_at),
            "expires_at": stamp(terms.expires_at),
            **terms.allowance.as_json(),
            "metadata": dict(terms.metadata), "response_cache": terms.response_cache,
            **terms.share.as_json(),
            "rotated_at": stamp(self.rotated_at),
            "previous_key_valid_until": stamp(self.previous_valid_until),
        }


def terms_of(row: ApiKeyRow) -> KeyTerms:
    metadata = {} if row.metadata_json is None else json.loads(row.metadata_json)
    return KeyTerms(allowance_of(row), row.name, row.expires_at, metadata, row.response_cache,
                    share_of(row))


def record_of(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(row.id, row.tenant, row.created_at, row.revoked_at, terms_of(row),
                     row.rotated_at, row.previous_valid_until)


def terms_columns(terms: KeyTerms) -> dict[str, Any]:
    """The row's columns for ``terms`` (the revision is counted by the store)."""
    return {
        **allowance_columns(terms.allowance), "name": terms.name,
        "expires_at": terms.expires_at, "response_cache": terms.response_cache,
        "metadata_json": json.dumps(dict(terms.metadata)) if terms.metadata else None,
        **share_columns(terms.share),
    }
