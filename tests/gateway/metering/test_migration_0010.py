"""Migration 0010 on SQLite and PostgreSQL: ledger rows and tenants stored before it have no
end user, adapter or tags and keep counting (a tenant's end users unlimited), and it goes
down and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.tenant_store import TenantStore
from gateway.metering.database import create_database_engine, migrate
from gateway.metering.ledger import Ledger
from gateway.metering.spend import SpendQuery, spend
from tests.gateway.metering.test_migrations import _migrate

BEFORE = "0008"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_database_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _schema(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    def read(connection: Connection) -> tuple[set[str], set[str]]:
        inspector = inspect(connection)
        return (set(inspector.get_table_names()),
                {c["name"] for c in inspector.get_columns("ledger")})

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def test_migration_when_rows_predate_it_then_no_user_no_tags_and_reversible(
    engine: AsyncEngine,
) -> None:
    await _migrate(engine, "upgrade", BEFORE)
    async with engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO ledger (id, tenant, model, n, status, prompt_tokens, cached_tokens,"
            " completion_tokens, reserved_tokens, reserved_pico, cost_pico, estimated,"
            " response_cached, recovered, instance_id, created_at, settled_at) VALUES ('old',"
            " 'acme', 'm', 1, 'ok', 3, 0, 4, 7, 70, 50, false, false, false, 'gw',"
            " '2026-12-01 10:00:00', '2026-12-01 10:00:01')"))
        await connection.execute(text(
            "INSERT INTO tenants (name, created_at, updated_at, budget_period, revision)"
            " VALUES ('acme', '2026-12-01 10:00:00', '2026-12-01 10:00:00', 'month', 0)"))
    await migrate(engine)
    [line] = await spend(engine, SpendQuery(group_by=("user", "tag", "adapter")))
    assert (line.group, line.requests) == ({"user": None, "tag": None, "adapter": None}, 1)
    tenant = await TenantStore(engine).get("acme")
    assert tenant is not None and tenant.terms.end_user.unlimited
    assert await Ledger(engine).distinct_values("acme", datetime(2026, 12, 1)) == (set(), set())
    await _migrate(engine, "downgrade", BEFORE)
    tables, columns = await _schema(engine)
    added = {"end_user", "adapter", "reasoning_tokens"}
    assert "ledger_tags" not in tables and not added & columns
    await migrate(engine)
    tables, columns = await _schema(engine)
    assert "ledger_tags" in tables and added <= columns
