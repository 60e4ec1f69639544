"""Who is calling: the bearer token of a request turned into a ``Principal``."""

from __future__ import annotations

import hmac
from typing import Protocol

from gateway.errors import AuthenticationError
from gateway.serving.accounting import ANONYMOUS, Principal

ADMIN = Principal(key_id="admin", tenant="admin", is_admin=True)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the configured one."""
    return hmac.compare_digest(given.encode(), expected.encode())


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal: ...


class AdminKeyAuthenticator:
    """Auth off: everyone is anonymous. Auth on: only the admin key is accepted.

    Virtual keys per tenant come from the key store (``gateway.auth.keys``) when the
    ledger is configured; this class is what remains without one.
    """

    def __init__(self, enabled: bool, admin_key: str | None) -> None:
        self._enabled = enabled
        self._admin_key = admin_key

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self._enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'."
            )
        if self._admin_key and hmac.compare_digest(token.encode(), self._admin_key.encode()):
            return ADMIN
        raise AuthenticationError("Incorrect API key provided.")
