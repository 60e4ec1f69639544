"""Virtual API keys: ``sk-gw-<id>.<secret>``; only a SHA-256 of the secret is stored.

The id is public (it names the key in the ledger and the admin API); the secret has 256
random bits, so a plain SHA-256 is as strong as a slow hash here. Comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "sk-gw-"
_ID_BYTES = 6


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A new key: ``token`` is shown once and never stored."""

    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{PREFIX}{self.key_id}.{self.secret}"

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def issue() -> IssuedKey:
    return IssuedKey(secrets.token_hex(_ID_BYTES), secrets.token_urlsafe(32))


def reissue(key_id: str) -> IssuedKey:
    """A new secret for an existing key id (a rotation)."""
    return IssuedKey(key_id, secrets.token_urlsafe(32))


def parse(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, dot, secret = token[len(PREFIX):].partition(".")
    if not dot or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    return key_id, secret


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())
