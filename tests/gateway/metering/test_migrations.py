"""Migration 0004 (tenants; keys' models, expiry, parallel limit, metadata, rotation) on
SQLite and PostgreSQL: a key made before it keeps working after it, with open terms, and
the migration goes down and up again without losing the key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth import api_keys
from gateway.auth.allowance import OPEN
from gateway.auth.key_store import KeyStore
from gateway.auth.tenant_store import TenantStore
from gateway.metering.database import MIGRATIONS, create_database_engine, migrate

BEFORE = "0003"
KEY_COLUMNS = {"max_parallel_requests", "models_json", "expires_at", "metadata_json",
               "revision", "rotated_at", "previous_secret_hash", "previous_valid_until"}


def _alembic(connection: Connection, action: str, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, target)


async def _migrate(engine: AsyncEngine, action: str, target: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_alembic, action, target)


async def _schema(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    def read(connection: Connection) -> tuple[set[str], set[str]]:
        inspector = inspect(connection)
        return (set(inspector.get_table_names()),
                {c["name"] for c in inspector.get_columns("api_keys")})

    async with engine.connect() as connection:
        return await connection.run_sync(read)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_database_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _key_made_at_0003(engine: AsyncEngine) -> str:
    """A key row as the 0003 schema wrote it; returns its token."""
    issued = api_keys.issue()
    async with engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO api_keys (id, tenant, name, secret_hash, created_at, budget_pico,"
            " budget_period, rpm, tpm, response_cache) VALUES (:id, 'acme', 'old',"
            " :hash, '2026-11-30 10:00:00', 5000000000000, 'month', 60, NULL, NULL)"),
            {"id": issued.key_id, "hash": issued.secret_hash})
    return issued.token


async def test_migration_when_a_key_predates_it_then_the_key_works_with_open_terms(
    engine: AsyncEngine,
) -> None:
    await _migrate(engine, "upgrade", BEFORE)
    token = await _key_made_at_0003(engine)
    await migrate(engine)  # to head, as a gateway starts
    tables, columns = await _schema(engine)
    assert "tenants" in tables and columns >= KEY_COLUMNS
    record = await KeyStore(engine).verify(token)
    assert record is not None and record.tenant == "acme"
    assert record.terms.allowance.models is None and record.terms.expires_at is None
    assert (record.quota.rpm, str(record.quota.budget_usd)) == (60, "5")
    assert record.terms.allowance.revision == 0 and record.terms.metadata == {}
    principal = await KeyStore(engine).principal(record)
    assert principal.tenant_allowance == OPEN and principal.may_use("any-model")


async def test_migration_when_downgraded_and_upgraded_again_then_keys_survive(
    engine: AsyncEngine,
) -> None:
    await _migrate(engine, "upgrade", BEFORE)
    token = await _key_made_at_0003(engine)
    await migrate(engine)
    await TenantStore(engine).create("acme")
    await _migrate(engine, "downgrade", BEFORE)
    tables, columns = await _schema(engine)
    assert "tenants" not in tables and not KEY_COLUMNS & columns
    await migrate(engine)
    assert await KeyStore(engine).verify(token) is not None
    assert await TenantStore(engine).list() == []
