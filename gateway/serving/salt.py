"""The prefix-cache salt of a tenant: an HMAC of its name, so that no client can guess
another tenant's salt and share (or time) its KV-cache blocks."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from gateway.settings import AuthSettings

log = logging.getLogger("llm_gateway.serving")


class TenantSalt:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a salt secret needs at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> TenantSalt:
        """``cache_salt_key``, else derived from the admin key, else a fresh secret for this
        process (its replicas then share no KV blocks: said once in the log)."""
        if auth.cache_salt_key is not None:
            return cls(auth.cache_salt_key.get_secret_value().encode())
        if auth.admin_key is not None and auth.admin_key.get_secret_value():
            admin = auth.admin_key.get_secret_value().encode()
            return cls(hmac.new(admin, b"llm-gateway cache salt", hashlib.sha256).digest())
        log.info("no cache_salt_key nor admin key: prefix-cache salts are this process's own")
        return cls(secrets.token_bytes(32))

    def __call__(self, tenant: str) -> str:
        return hmac.new(self._secret, tenant.encode(), hashlib.sha256).hexdigest()[:32]
