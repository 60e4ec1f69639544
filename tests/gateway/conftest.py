"""Fixtures for metering tests: a fresh ledger database on SQLite and on PostgreSQL.

PostgreSQL (``LLMGW_TEST_POSTGRES``, default 127.0.0.1:5432, trust auth) gets a new
database per test, created from ``template0`` and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

POSTGRES = os.environ.get("LLMGW_TEST_POSTGRES", "postgres@127.0.0.1:5432")


async def _postgres_admin() -> object:
    import asyncpg

    return await asyncpg.connect(f"postgresql://{POSTGRES}/test")


async def create_postgres_database() -> str:
    name = f"llmgw_test_{uuid.uuid4().hex[:12]}"
    admin = await _postgres_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[attr-defined]
    finally:
        await admin.close()  # type: ignore[attr-defined]
    return name


async def drop_postgres_database(name: str) -> None:
    admin = await _postgres_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
    finally:
        await admin.close()  # type: ignore[attr-defined]


def postgres_url(name: str) -> str:
    return f"postgresql+asyncpg://{POSTGRES}/{name}"


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database URL; each test using it runs once per database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    name = await create_postgres_database()
    try:
        yield postgres_url(name)
    finally:
        await drop_postgres_database(name)
