"""The authenticator of a metered gateway: the admin key, or a live virtual key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.auth import api_keys
from gateway.auth.bearer import ADMIN, AdminKeyAuthenticator, bearer_token
from gateway.auth.key_records import KeyPrincipal
from gateway.auth.key_store import KeyStore
from gateway.errors import AuthenticationError, MeteringUnavailableError
from gateway.metering.ledger import utcnow
from gateway.metering.outage import is_database_outage
from gateway.serving.accounting import ANONYMOUS, Principal


class KeyAuthenticator:
    """Auth on: the admin key or a live virtual key. Auth off: everyone is anonymous.

    An unknown, wrong or revoked key is a 401 ``invalid_api_key``; an expired one a 401
    ``expired_api_key`` (only once its secret matched: nothing leaks about other keys)."""

    def __init__(self, enabled: bool, admin_key: str | None, store: KeyStore,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._enabled = enabled
        self._admin = AdminKeyAuthenticator(enabled, admin_key)
        self._store = store
        self._clock = clock

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
        try:
            record = await self._store.verify(token)
            if record is None:
                raise AuthenticationError("Incorrect API key provided.")
            if record.expired(self._clock()):
                raise AuthenticationError("This API key has expired.", code="expired_api_key")
            return await self._store.principal(record)
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            raise MeteringUnavailableError(  # not a wrong key: retry later
                "the key store is unavailable", retry_after=5) from exc
