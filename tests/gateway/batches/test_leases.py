"""Leases on batch lines and on finalization, on SQLite and PostgreSQL: a lease that is
not renewed lapses and any instance takes the work over; the instance that lost it can
neither finish the line, nor bill it, nor finalize the batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.batches.files import FileStore
from gateway.batches.jsonl import InputLine
from gateway.batches.leases import Leases
from gateway.batches.output import Finalizer
from gateway.batches.store import BatchStore, NewBatch
from gateway.batches.tables import DONE, PENDING, RUNNING
from gateway.metering.database import create_database_engine, migrate
from gateway.metering.ledger import utcnow

LEASE_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_database_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _batch(store: BatchStore, lines: int) -> str:
    async def groups() -> AsyncIterator[list[InputLine]]:
        yield [InputLine(f"req-{i}", {"model": "m"}) for i in range(lines)]

    view = await store.create(NewBatch("acme", None, "/v1/completions", "file-x"), groups())
    return view.row.id


async def test_line_when_lease_not_renewed_then_another_instance_runs_it_and_owner_cannot(
    database: AsyncEngine,
) -> None:
    clock = Clock()
    store = BatchStore(database)
    first, second = (Leases(database, name, LEASE_S, clock) for name in ("gw-a", "gw-b"))
    batch_id = await _batch(store, 3)
    claimed = await first.claim(batch_id, 3)
    assert [line.attempt for line in claimed] == [1, 1, 1]
    clock.advance(LEASE_S / 2)
    assert await first.renew(claimed) == []  # renewed: nothing lost
    clock.advance(LEASE_S * 0.9)
    assert await second.expire() == 0  # renewed LEASE_S * 0.9 ago: still held
    clock.advance(LEASE_S * 0.2)
    assert await second.expire() == 3  # gw-a died: its leases lapsed
    retaken = await second.claim(batch_id, 3)
    assert [line.attempt for line in retaken] == [2, 2, 2]
    assert [line.request_id for line in retaken] == [f"{batch_id}-{i}-2" for i in range(3)]
    assert await first.renew(claimed) == claimed  # gw-a learns it lost them all
    assert not await first.still_held(claimed[0])  # so it may not bill them
    assert not await first.finish(claimed[0], DONE, {"late": True})
    assert await second.finish(retaken[0], DONE, {"ok": True})
    assert await store.counts(batch_id) == {DONE: 1, RUNNING: 2}


async def test_release_when_shutting_down_then_only_own_lines_go_back_to_pending(
    database: AsyncEngine,
) -> None:
    store = BatchStore(database)
    first, second = (Leases(database, name, LEASE_S) for name in ("gw-a", "gw-b"))
    batch_id = await _batch(store, 4)
    await first.claim(batch_id, 2)
    await second.claim(batch_id, 2)
    assert await first.release() == 2
    assert await store.counts(batch_id) == {PENDING: 2, RUNNING: 2}


async def test_finalization_when_finalizer_dies_then_taken_over_and_the_late_one_rolled_back(
    database: AsyncEngine,
) -> None:
    clock = Clock()
    store = BatchStore(database)
    first, second = (Leases(database, name, LEASE_S, clock) for name in ("gw-a", "gw-b"))
    batch_id = await _batch(store, 2)
    for line in await first.claim(batch_id, 2):
        assert await first.finish(line, DONE, {"custom_id": line.custom_id})
    row = (await store.get(batch_id, None))
    assert row is not None and await first.start_finalizing(row.row)
    finalizing = await store.get(batch_id, None)
    assert finalizing is not None
    assert not second.finalizer_lapsed(finalizing.row)
    assert not await second.take_over(finalizing.row)  # gw-a is still within its lease
    clock.advance(LEASE_S + 1)
    assert second.finalizer_lapsed(finalizing.row) and await second.take_over(finalizing.row)
    assert await Finalizer(database, "gw-a").finalize(batch_id) is None  # lost: rolled back
    assert await Finalizer(database, "gw-b").finalize(batch_id) == "completed"
    done = await store.get(batch_id, None)
    assert done is not None and done.row.status == "completed"
    assert done.row.output_file_id is not None and done.row.error_file_id is None
    files = FileStore(database)
    assert len(await files.list("acme", "batch_output", 10)) == 1  # gw-a wrote none
    content = b"".join([chunk async for chunk in files.chunks(done.row.output_file_id)])
    assert content.decode().splitlines() == ['{"custom_id": "req-0"}', '{"custom_id": "req-1"}']
