"""Virtual keys in the metering database: create, edit, rotate, revoke and verify them.

Only a SHA-256 of a key's secret is stored. Rotating keeps the key's id (its ledger rows,
budget and limits stay its own) and issues a new secret; the replaced one stays valid for
the grace period the rotation names. Every edit, rotation and revocation calls
``on_change`` once committed (the gateway's: clear the cache of verified keys, here and on
every gateway through Redis; see ``gateway.auth.key_cache``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.auth import api_keys
from gateway.auth.allowance import OPEN, allowance_of, check_tenant_name, end_user_quota_of
from gateway.auth.fair_share import share_of, with_share
from gateway.auth.key_records import KeyPrincipal as KeyPrincipal
from gateway.auth.key_records import KeyRecord, KeyTerms, record_of, terms_columns, terms_of
from gateway.metering.ledger import utcnow
from gateway.metering.tables import ApiKeyRow, TenantRow

MAX_GRACE_S = 30 * 86400
OnChange = Callable[[], Awaitable[None]]


async def unchanged() -> None:
    """No cache to tell (the CLI without Redis, tests)."""


class KeyStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow,
                 on_change: OnChange = unchanged) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self._on_change = on_change

    async def create(self, tenant: str, terms: KeyTerms = KeyTerms()) -> tuple[KeyRecord, str]:
        """A new key for ``tenant``; returns its record and the token (shown once)."""
        check_tenant_name(tenant)
        now = self._clock()
        if terms.expires_at is not None and terms.expires_at <= now:
            raise ValueError("expires_at is in the past")
        issued = api_keys.issue()
        row = ApiKeyRow(id=issued.key_id, tenant=tenant, secret_hash=issued.secret_hash,
                        created_at=now, revoked_at=None, revision=0, **terms_columns(terms))
        async with self._sessions.begin() as session:
            session.add(row)
        return record_of(row), issued.token

    async def list(self, tenant: str | None = None, include_revoked: bool = False
                   ) -> list[KeyRecord]:
        statement = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if tenant is not None:
            statement = statement.where(ApiKeyRow.tenant == tenant)
        if not include_revoked:
            statement = statement.where(ApiKeyRow.revoked_at.is_(None))
        async with self._sessions() as session:
            return [record_of(row) for row in (await session.scalars(statement)).all()]

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        return None if row is None else record_of(row)

    async def update(self, key_id: str, change: Callable[[KeyTerms], KeyTerms]
                     ) -> KeyRecord | None:
        """Apply ``change`` to a live key's terms in one transaction (None: no live key).
        Every edit counts a revision, so limiters seed its budget afresh."""
        async with self._sessions.begin() as session:
            row = await session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.revoked_at is not None:
                return None
            for column, value in terms_columns(change(terms_of(row))).items():
                setattr(row, column, value)
            row.revision += 1
        await self._on_change()
        return record_of(row)

    async def rotate(self, key_id: str, grace_s: float) -> tuple[KeyRecord, str] | None:
        """A new secret for a live key; the old one stays valid for ``grace_s`` seconds
        (0: at once). A second rotation ends the first one's grace period."""
        if not 0 <= grace_s <= MAX_GRACE_S:
            raise ValueError(f"the grace period is 0 to {MAX_GRACE_S} seconds")
        issued = api_keys.reissue(key_id)
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.revoked_at is not None:
                return None
            row.previous_secret_hash = row.secret_hash if grace_s > 0 else None
            row.previous_valid_until = now + timedelta(seconds=grace_s) if grace_s > 0 else None
            row.secret_hash, row.rotated_at = issued.secret_hash, now
        await self._on_change()
        return record_of(row), issued.token

    async def revoke(self, key_id: str) -> bool:
        statement = (update(ApiKeyRow)
                     .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                     .values(revoked_at=self._clock()))
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        await self._on_change()
        return bool(getattr(result, "rowcount", 0) == 1)

    async def verify(self, token: str) -> KeyRecord | None:
        """The unrevoked key ``token`` names, if its secret matches the current one or,
        within a rotation's grace period, the replaced one (both compared in constant
        time, always). Whether it has expired is the caller's question."""
        parsed = api_keys.parse(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        nothing = api_keys.hash_secret("")  # no secret is empty: never matches
        stored = row.secret_hash if row is not None else nothing
        previous = nothing
        if row is not None and row.previous_secret_hash and row.previous_valid_until and (
                row.previous_valid_until > self._clock()):
            previous = row.previous_secret_hash
        current_ok = api_keys.matches(secret, stored)
        previous_ok = api_keys.matches(secret, previous)
        if not (current_ok or previous_ok) or row is None or row.revoked_at is not None:
            return None
        return record_of(row)

    async def principal(self, record: KeyRecord) -> KeyPrincipal:
        """The caller holding ``record``'s key, with its tenant's allowance (if any) and its
        fair share: the key's weight and priority, else its tenant's."""
        async with self._sessions() as session:
            tenant = await session.get(TenantRow, record.tenant)
        return with_share(self._principal(record, tenant), record.terms.share, share_of(tenant))

    @staticmethod
    def _principal(record: KeyRecord, tenant: TenantRow | None) -> KeyPrincipal:
        if tenant is None:
            return record.principal(OPEN)
        return record.principal(allowance_of(tenant), end_user_quota_of(tenant))
