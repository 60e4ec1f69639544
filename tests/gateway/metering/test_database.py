"""Schema migrations when several gateway replicas start against one database."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from gateway.metering.database import create_database_engine, migrate
from tests.conftest import REPO

MIGRATE = (
    "import asyncio, sys\n"
    "from gateway.metering.database import create_database_engine, migrate\n"
    "async def main():\n"
    "    engine = create_database_engine(sys.argv[1])\n"
    "    await migrate(engine)\n"
    "    await engine.dispose()\n"
    "asyncio.run(main())\n"
)


async def _migrate_in_process(database_url: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MIGRATE, database_url, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, output


async def test_migrate_when_four_replicas_start_together_then_all_succeed_at_head(
    database_url: str,
) -> None:
    results = await asyncio.gather(*[_migrate_in_process(database_url) for _ in range(4)])
    for code, output in results:
        assert code == 0, output.decode()
    engine = create_database_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(
                text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert len(versions) == 1
        await migrate(engine)  # and once more is a no-op
    finally:
        await engine.dispose()
