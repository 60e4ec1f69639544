"""The authenticator of a metered gateway: the admin key, or a live virtual key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.auth import api_keys
from gateway.auth.bearer import ADMIN, AdminKeyAuthenticator, bearer_token
from gateway.auth.key_cache import KeyCache
from gateway.auth.key_records import KeyPrincipal, KeyRecord
from gateway.auth.key_store import KeyStore
from gateway.errors import AuthenticationError, MeteringUnavailableError
from gateway.metering.ledger import utcnow
from gateway.metering.outage import is_database_outage
from gateway.serving.accounting import ANONYMOUS, Principal


class KeyAuthenticator:
    """Auth on: the admin key or a live virtual key. Auth off: everyone is anonymous.

    An unknown, wrong or revoked key is a 401 ``invalid_api_key``; an expired one a 401
    ``expired_api_key`` (only once its secret matched: nothing leaks about other keys).
    A key that verified is remembered for a few seconds (``cache``): no database round trip
    for it on the hot path; expiry is still checked on every request."""

    def __init__(self, enabled: bool, admin_key: str | None, store: KeyStore,
                 clock: Callable[[], datetime] = utcnow,
                 cache: KeyCache | None = None) -> None:
        self._enabled = enabled
        self._admin = AdminKeyAuthenticator(enabled, admin_key)
        self._store = store
        self._clock = clock
        self.cache = cache if cache is not None else KeyCache(0, 1)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self._enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is not None and api_keys.parse(token) is not None:
            return await self._key_principal(token)
        principal = await self._admin.authenticate(authorization)
        assert principal is ADMIN
        return principal

    async def _key_principal(self, token: str) -> KeyPrincipal:
        now = self._clock()
        cached = self.cache.get(token, now)
        if cached is not None:
            _check_expiry(cached.record, now)
            return cached.principal
        generation = self.cache.generation
        try:
            record = await self._store.verify(token)
            if record is None:
                raise AuthenticationError("Incorrect API key provided.")
            _check_expiry(record, now)
            principal = await self._store.principal(record)
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            raise MeteringUnavailableError(  # not a wrong key: retry later
                "the key store is unavailable", retry_after=5) from exc
        self.cache.put(token, record, principal, generation)
        return principal


def _check_expiry(record: KeyRecord, now: datetime) -> None:
    if record.expired(now):
        raise AuthenticationError("This API key has expired.", code="expired_api_key")
