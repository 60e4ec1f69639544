"""The metering database: an async SQLAlchemy engine and its Alembic migrations."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x6C6C6D67  # "llmg": the advisory lock every replica takes to migrate


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@dataclass(frozen=True)
class PoolOptions:
    """The connection pool: ``size`` kept, ``max_overflow`` more at peaks, and how long a
    checkout waits for a free one before SQLAlchemy raises its pool ``TimeoutError``."""

    size: int = 10
    max_overflow: int = 20
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.size < 1 or self.max_overflow < 0 or self.timeout_s <= 0:
            raise ValueError("a pool has size >= 1, max_overflow >= 0 and timeout_s > 0")


def create_database_engine(url: str, pool: PoolOptions = PoolOptions()) -> AsyncEngine:
    """An async engine for ``url``; a SQLite file gets WAL mode and its folder."""
    parsed = make_url(url)
    sizes = {"pool_size": pool.size, "max_overflow": pool.max_overflow,
             "pool_timeout": pool.timeout_s}
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, **sizes)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **sizes)
    else:
        engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@asynccontextmanager
async def _sqlite_file_lock(database: str) -> AsyncIterator[None]:
    """An exclusive lock file beside a SQLite database, held across processes."""
    fd = await asyncio.to_thread(os.open, f"{database}.migrate-lock", os.O_CREAT | os.O_RDWR)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision, one replica at a time.

    Replicas that start together would otherwise race to create the same tables;
    PostgreSQL serialises them with a transaction-scoped advisory lock, a SQLite file
    with a lock file beside it. The replica that waits finds the schema at head.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        async with _sqlite_file_lock(url.database), engine.begin() as connection:
            await connection.run_sync(_upgrade)
        return
    async with engine.begin() as connection:
        if url.get_backend_name() == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": MIGRATION_LOCK_KEY})
        await connection.run_sync(_upgrade)
