"""Migration 0006 on SQLite and PostgreSQL: a file stored whole by 0005 is read back from
its chunk after it (and whole again after a downgrade), and a line an older gateway left
running, without a heartbeat, counts as a lapsed lease that any instance reclaims."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.batches.files import FileStore
from gateway.batches.leases import Leases
from gateway.metering.database import create_database_engine, migrate
from tests.gateway.metering.test_migrations import _migrate

CONTENT = b'{"custom_id": "a"}\n' * 3


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_database_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _made_at_0005(engine: AsyncEngine) -> None:
    await _migrate(engine, "upgrade", "0005")
    async with engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO files (id, tenant, filename, purpose, bytes, created_at, content)"
            " VALUES ('file-old', 'acme', 'in.jsonl', 'batch', :size, '2026-11-30 10:00:00',"
            " :content)"), {"size": len(CONTENT), "content": CONTENT})
        await connection.execute(text(
            "INSERT INTO batch_lines (batch_id, line, custom_id, body_json, status, attempts,"
            " owner) VALUES ('batch_old', 0, 'a', '{}', 'running', 1, 'old-gateway')"))


async def _content(engine: AsyncEngine) -> bytes:
    return b"".join([chunk async for chunk in FileStore(engine).chunks("file-old")])


async def test_migration_when_files_and_running_lines_predate_it_then_both_carry_over(
    engine: AsyncEngine,
) -> None:
    await _made_at_0005(engine)
    await migrate(engine)
    info = await FileStore(engine).get("file-old", "acme")
    assert info is not None and info.size == len(CONTENT) and info.expires_at is None
    assert await _content(engine) == CONTENT
    leases = Leases(engine, "new-gateway", 60)
    assert await leases.expire() == 1  # no heartbeat: lapsed
    [line] = await leases.claim("batch_old", 1)
    assert (line.attempt, line.request_id) == (2, "batch_old-0-2")


async def test_migration_when_downgraded_and_upgraded_again_then_content_survives(
    engine: AsyncEngine,
) -> None:
    await _made_at_0005(engine)
    await migrate(engine)
    await _migrate(engine, "downgrade", "0005")
    async with engine.connect() as connection:
        whole = await connection.scalar(text("SELECT content FROM files WHERE id = 'file-old'"))
    await migrate(engine)
    assert bytes(whole) == CONTENT and await _content(engine) == CONTENT
