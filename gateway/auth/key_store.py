"""Virtual keys in the metering database, and the authenticator that checks them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.auth import api_keys
from gateway.auth.bearer import ADMIN, AdminKeyAuthenticator, bearer_token
from gateway.errors import AuthenticationError, MeteringUnavailableError
from gateway.limits.quota import UNLIMITED, Quota
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import from_pico, to_pico
from gateway.metering.tables import ApiKeyRow
from gateway.serving.accounting import ANONYMOUS, Principal


@dataclass(frozen=True)
class KeyPrincipal(Principal):
    """A caller holding a virtual key, with the limits that key carries."""

    quota: Quota = UNLIMITED
    response_cache: bool | None = None  # the key's response-cache policy (None: default)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    quota: Quota
    response_cache: bool | None = None

    def as_json(self) -> dict[str, object]:
        budget = self.quota.budget_usd
        return {
            "id": self.key_id, "tenant": self.tenant, "name": self.name,
            "created_at": self.created_at.isoformat() + "Z",
            "revoked_at": self.revoked_at.isoformat() + "Z" if self.revoked_at else None,
            "budget_usd": None if budget is None else str(budget),
            "budget_period": self.quota.budget_period,
            "rpm": self.quota.rpm, "tpm": self.quota.tpm,
            "response_cache": self.response_cache,
        }


def _record(row: ApiKeyRow) -> KeyRecord:
    budget = None if row.budget_pico is None else from_pico(row.budget_pico).normalize()
    quota = Quota(rpm=row.rpm, tpm=row.tpm, budget_usd=budget,
                  budget_period="day" if row.budget_period == "day" else "month")
    return KeyRecord(row.id, row.tenant, row.name, row.created_at, row.revoked_at, quota,
                     row.response_cache)


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, tenant: str, quota: Quota, name: str | None = None,
                     response_cache: bool | None = None) -> tuple[KeyRecord, str]:
        """A new key for ``tenant``; returns its record and the token (shown once)."""
        if not tenant or len(tenant) > 128:
            raise ValueError("tenant must have 1 to 128 characters")
        issued = api_keys.issue()
        row = ApiKeyRow(
            id=issued.key_id, tenant=tenant, name=name, secret_hash=issued.secret_hash,
            created_at=utcnow(), revoked_at=None,
            budget_pico=None if quota.budget_usd is None else to_pico(quota.budget_usd),
            budget_period=quota.budget_period, rpm=quota.rpm, tpm=quota.tpm,
            response_cache=response_cache,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return _record(row), issued.token

    async def list(self, tenant: str | None = None, include_revoked: bool = False
                   ) -> list[KeyRecord]:
        statement = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if tenant is not None:
            statement = statement.where(ApiKeyRow.tenant == tenant)
        if not include_revoked:
            statement = statement.where(ApiKeyRow.revoked_at.is_(None))
        async with self._sessions() as session:
            return [_record(row) for row in (await session.scalars(statement)).all()]

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        return None if row is None else _record(row)

    async def revoke(self, key_id: str) -> bool:
        statement = (update(ApiKeyRow)
                     .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                     .values(revoked_at=utcnow()))
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        return bool(getattr(result, "rowcount", 0) == 1)

    async def verify(self, token: str) -> KeyRecord | None:
        """The live key ``token`` names, if its secret matches (constant-time)."""
        parsed = api_keys.parse(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        stored = row.secret_hash if row is not None else api_keys.hash_secret("")
        if not api_keys.matches(secret, stored) or row is None or row.revoked_at is not None:
            return None
        return _record(row)


class KeyAuthenticator:
    """Auth on: the admin key or a live virtual key. Auth off: everyone is anonymous."""

    def __init__(self, enabled: bool, admin_key: str | None, store: KeyStore) -> None:
        self._enabled = enabled
        self._admin = AdminKeyAuthenticator(enabled, admin_key)
        self._store = store

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self._enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is not None and api_keys.parse(token) is not None:
            try:
                record = await self._store.verify(token)
            except (OperationalError, InterfaceError) as exc:  # not a wrong key: retry later
                raise MeteringUnavailableError(
                    "the key store is unavailable", retry_after=5) from exc
            if record is None:
                raise AuthenticationError("Incorrect API key provided.")
            return KeyPrincipal(key_id=record.key_id, tenant=record.tenant,
                                quota=record.quota, response_cache=record.response_cache)
        principal = await self._admin.authenticate(authorization)
        assert principal is ADMIN
        return principal
