"""Migration 0007 on SQLite and PostgreSQL: lines stored before it have no failed attempt
(and are claimed with none), and it goes down and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.batches.leases import Leases
from gateway.metering.database import create_database_engine, migrate
from tests.gateway.metering.test_migrations import _migrate


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_database_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _line_columns(engine: AsyncEngine) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("batch_lines")}

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def test_migration_when_lines_predate_it_then_they_have_no_failed_attempt(
    engine: AsyncEngine,
) -> None:
    await _migrate(engine, "upgrade", "0006")
    async with engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO batch_lines (batch_id, line, custom_id, body_json, status, attempts)"
            " VALUES ('batch_old', 0, 'a', '{}', 'pending', 2)"))
    await migrate(engine)
    [line] = await Leases(engine, "gw", 60).claim("batch_old", 1)
    assert (line.attempt, line.failures) == (3, 0)
    await _migrate(engine, "downgrade", "0006")
    assert "failed_attempts" not in await _line_columns(engine)
    await migrate(engine)
    assert "failed_attempts" in await _line_columns(engine)
