"""Verified keys, remembered for a few seconds: no database round trip per request.

An entry is a key that verified (its record and principal, tenant allowance included),
keyed by a SHA-256 of the whole token, so a hit means the same token verified before.
Failures are never remembered: a wrong or unknown key asks the database every time, and a
new key works at once.

Freshness: an entry lives ``ttl_s`` (monotonic) at most. Any change to a key or a tenant
made through this process clears the cache at once (``invalidate``); other processes hear
of it through Redis (``gateway.auth.key_feed``) where Redis is configured. A lookup that
raced a change (read the database before the change, finished after its invalidation) is
not stored: ``put`` takes the generation seen before the read and drops a stale one. So
the worst case is ``ttl_s``: a change another gateway made while this one could not hear
Redis, or made without Redis, or made by the CLI without Redis.

An entry whose key was rotated with a grace period expires no later than that grace ends
(the replaced secret may be the one that verified), and expiry is checked on every hit.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway.auth.key_records import KeyPrincipal, KeyRecord


@dataclass(frozen=True)
class CachedKey:
    record: KeyRecord
    principal: KeyPrincipal
    fresh_until: float  # monotonic seconds


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class KeyCache:
    """A bounded LRU of verified keys; ``ttl_s`` 0 turns it off."""

    def __init__(self, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s must be >= 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, CachedKey] = OrderedDict()
        self.generation = 0  # counts invalidations; a lookup started before one is stale

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: datetime) -> CachedKey | None:
        """The entry for ``token`` if fresh; ``now`` (naive UTC) bounds a grace period."""
        digest = _digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        grace = entry.record.previous_valid_until
        if entry.fresh_until <= self._clock() or (grace is not None and grace <= now):
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry

    def put(self, token: str, record: KeyRecord, principal: KeyPrincipal,
            generation: int) -> None:
        """Remember a key verified by a lookup that began at ``generation``."""
        if self.ttl_s == 0 or generation != self.generation:
            return
        digest = _digest(token)
        self._entries[digest] = CachedKey(record, principal, self._clock() + self.ttl_s)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def invalidate(self) -> None:
        """A key or a tenant changed: forget everything, and any lookup in flight."""
        self.generation += 1
        self._entries.clear()
