"""Metering, assembled from settings: database, ledger, keys, tenants, limits, prices,
metrics.

``start`` (in the app lifespan) migrates the schema, settles what the settlement journal
kept (a gateway that died during a database outage), then closes rows a crash left open;
``stop`` releases connections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.key_auth import KeyAuthenticator
from gateway.auth.key_cache import KeyCache
from gateway.auth.key_feed import KeyChanges
from gateway.auth.key_store import KeyStore
from gateway.auth.tenant_store import TenantStore
from gateway.limits.memory import InProcessLimiter
from gateway.limits.quota import Limiter, Subject
from gateway.limits.redis_backend import RedisLimiter
from gateway.metering.accounting import MeteredAccounting
from gateway.metering.adapter_feed import AdapterFeed
from gateway.metering.attribution_caps import AttributionCaps
from gateway.metering.database import PoolOptions, create_database_engine, migrate
from gateway.metering.journal import SettlementJournal, journal_path
from gateway.metering.ledger import Ledger, utcnow
from gateway.metering.metrics import MeteringMetrics
from gateway.metering.pricing import Price, PriceBook
from gateway.settings import PriceSettings, PricingSettings, Settings

log = logging.getLogger("llm_gateway.metering")


def _price(spec: PriceSettings) -> Price:
    cached = spec.cached_prompt if spec.cached_prompt is not None else spec.prompt
    return Price(prompt=spec.prompt, completion=spec.completion, cached_prompt=cached,
                 cache_hit_prompt=spec.cache_hit_prompt,
                 cache_hit_completion=spec.cache_hit_completion,
                 batch_prompt=spec.batch_prompt, batch_completion=spec.batch_completion)


def price_book(prices: PricingSettings) -> PriceBook:
    return PriceBook(
        models={name: _price(spec) for name, spec in prices.models.items()},
        tenants={tenant: {model: _price(spec) for model, spec in models.items()}
                 for tenant, models in prices.tenants.items()},
    )


@dataclass
class Metering:
    database: AsyncEngine
    ledger: Ledger
    keys: KeyStore
    limiter: Limiter
    accounting: MeteredAccounting
    authenticator: KeyAuthenticator
    orphan_after_s: float
    tenants: TenantStore
    key_changes: KeyChanges  # the cache of verified keys, kept fresh across gateways
    adapter_feed: AdapterFeed  # adapter registrations, reaching every gateway

    async def start(self) -> None:
        await migrate(self.database)
        await self.key_changes.start()
        await self.accounting.replay()  # before recovery would close those rows at no cost
        cutoff = utcnow() - timedelta(seconds=self.orphan_after_s)
        closed = await self.ledger.recover(self.accounting.instance_id, cutoff)
        if closed:
            log.warning("closed %d ledger rows left open by an earlier crash", closed)

    async def stop(self) -> None:
        await self.accounting.close()  # settlements waiting for the database: a last try
        await self.limiter.close()
        await self.key_changes.stop()
        await self.adapter_feed.stop()
        await self.database.dispose()


def build_metering(settings: Settings, registry: CollectorRegistry | None = None) -> Metering:
    options = settings.metering
    pool = PoolOptions(options.pool_size, options.pool_max_overflow, options.pool_timeout_s)
    database = create_database_engine(settings.database_url(), pool)
    ledger = Ledger(database)

    async def seed(subject: Subject, since: datetime) -> int:
        if subject.scope == "key":
            pico = await ledger.committed_spend(since, key_id=subject.name)
        elif subject.scope == "user":
            pico = await ledger.committed_spend(since, tenant=subject.owner, user=subject.name)
        else:
            pico = await ledger.committed_spend(since, tenant=subject.name)
        return (pico + 999) // 1000  # nano-dollars, rounded up

    url = settings.metering.redis_url
    lease_s = settings.metering.orphan_after_s  # a parallel slot never settled frees itself
    limiter: Limiter = (RedisLimiter(url, seed, lease_s=lease_s, timeout_s=options.redis_timeout_s)
                        if url else InProcessLimiter(seed, lease_s))
    metrics = MeteringMetrics(registry or CollectorRegistry(),
                              settings.metering.metrics_max_tenants)
    accounting = MeteredAccounting(ledger, limiter, price_book(settings.prices), metrics,
                                   settings.metering.instance_id,
                                   limiter_fail_open=options.redis_fail_open,
                                   journal=SettlementJournal(journal_path(
                                       settings.data_dir, settings.metering.instance_id)),
                                   caps=AttributionCaps(ledger, options.max_end_users_per_tenant,
                                                        options.max_tags_per_tenant))
    metrics.watch_backlog(accounting.backlog)
    auth = settings.auth
    changes = KeyChanges(KeyCache(auth.key_cache_ttl_s, auth.key_cache_size), url,
                         options.redis_timeout_s)
    keys = KeyStore(database, on_change=changes.changed)
    admin = auth.admin_key.get_secret_value() if auth.admin_key else None
    authenticator = KeyAuthenticator(auth.enabled, admin, keys, cache=changes.cache)
    return Metering(database, ledger, keys, limiter, accounting, authenticator,
                    settings.metering.orphan_after_s,
                    TenantStore(database, on_change=changes.changed), changes,
                    AdapterFeed(url, options.redis_timeout_s))
