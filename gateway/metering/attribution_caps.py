"""How many distinct end users and tags one tenant's ledger rows may carry in a UTC month
(``metering.max_end_users_per_tenant``, ``metering.max_tags_per_tenant``): past the cap a
request naming a new one is a 400 naming the field it came from; values already seen this
month pass. Each gateway seeds a tenant's month from the ledger at its first request, then
counts in memory: with several gateways a cap may be passed by the values that gateways
admit between two of their seeds (each knows only the ledger it read and its own admits).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from gateway.errors import InvalidRequestError
from gateway.metering.ledger import Ledger
from gateway.serving.attribution import Attribution


@dataclass
class _Seen:
    month: datetime
    users: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)


def _month(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class AttributionCaps:
    def __init__(self, ledger: Ledger, max_users: int, max_tags: int) -> None:
        self._ledger = ledger
        self._max_users = max_users
        self._max_tags = max_tags
        self._seen: dict[str, _Seen] = {}
        self._lock = asyncio.Lock()

    async def check(self, tenant: str, attribution: Attribution, now: datetime) -> None:
        """Admit the request's user and tags for its tenant, or raise a 400."""
        if attribution.user is None and not attribution.tags:
            return
        async with self._lock:
            seen = await self._month_of(tenant, _month(now))
            user = attribution.user
            new_user = user is not None and user not in seen.users
            if new_user and len(seen.users) >= self._max_users:
                raise InvalidRequestError(
                    f"this tenant has reached its {self._max_users} distinct end users "
                    "this month", param="user", code="too_many_end_users")
            new_tags = [tag for tag in attribution.tags if tag not in seen.tags]
            if new_tags and len(seen.tags) + len(new_tags) > self._max_tags:
                raise InvalidRequestError(
                    f"this tenant has reached its {self._max_tags} distinct tags this month",
                    param=attribution.source_of(new_tags[0]), code="too_many_tags")
            if user is not None:
                seen.users.add(user)
            seen.tags.update(new_tags)

    async def _month_of(self, tenant: str, month: datetime) -> _Seen:
        seen = self._seen.get(tenant)
        if seen is None or seen.month != month:
            users, tags = await self._ledger.distinct_values(tenant, month)
            seen = self._seen[tenant] = _Seen(month, users, tags)
        return seen
