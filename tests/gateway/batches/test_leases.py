"""Leases on batch lines and on finalization, on SQLite and PostgreSQL: a lease that is
not renewed lapses and any instance takes the work over; the instance that lost it can
neither finish the line, nor bill it, nor finalize the batch. A lapsed lease is a failed
attempt, and a line fails for good after max_attempts of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.batches.files import FileStore
from gateway.batches.jsonl import InputLine
from gateway.batches.leases import Failure, Leases
from gateway.batches.output import Finalizer
from gateway.batches.store import BatchStore, NewBatch
from gateway.batches.tables import DONE, FAILED, PENDING, RUNNING, BatchLineRow
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


async def _line_row(database: AsyncEngine, batch_id: str, line: int) -> BatchLineRow:
    async with database.connect() as connection:
        row = (await connection.execute(select(BatchLineRow).where(
            BatchLineRow.batch_id == batch_id, BatchLineRow.line == line))).one()
    return BatchLineRow(**row._mapping)


async def test_line_when_its_holder_dies_max_attempts_times_then_failed_with_an_error_line(
    database: AsyncEngine,
) -> None:
    """A poison pill that kills (or stalls) every gateway running it stops at max_attempts,
    whichever gateways held it."""
    clock = Clock()
    store = BatchStore(database)
    holders = [Leases(database, f"gw-{i}", LEASE_S, clock, max_attempts=3) for i in range(3)]
    batch_id = await _batch(store, 2)
    for number, holder in enumerate(holders):
        [line, *_] = await holder.claim(batch_id, 1)
        assert (line.line, line.attempt, line.failures) == (0, number + 1, number)
        clock.advance(LEASE_S + 1)  # it died: no renewal
        assert await holders[(number + 1) % 3].expire() == 1  # a failed attempt
    assert await store.counts(batch_id) == {FAILED: 1, PENDING: 1}
    row = await _line_row(database, batch_id, 0)
    assert (row.attempts, row.failed_attempts, row.owner) == (3, 3, None)
    result = json.loads(row.result_json or "")
    assert result["custom_id"] == "req-0" and result["response"] is None
    assert result["error"]["code"] == "worker_lost"
    assert "attempt 3 of 3" in result["error"]["message"]
    [other] = await holders[0].claim(batch_id, 5)  # only the healthy line is left to run
    assert (other.line, other.failures) == (1, 0)


async def test_attempt_when_failed_then_pending_again_until_max_attempts_and_a_lost_one_cannot(
    database: AsyncEngine,
) -> None:
    clock = Clock()
    store = BatchStore(database)
    first, second = (Leases(database, name, LEASE_S, clock, max_attempts=2)
                     for name in ("gw-a", "gw-b"))
    batch_id = await _batch(store, 1)
    [line] = await first.claim(batch_id, 1)
    timeout = Failure("line_timeout", "the request ran too long")
    assert await first.fail(line, timeout)
    assert not await first.fail(line, timeout)  # once per attempt
    assert await store.counts(batch_id) == {PENDING: 1}
    [again] = await first.claim(batch_id, 1)
    assert (again.attempt, again.failures) == (2, 1)
    clock.advance(LEASE_S + 1)
    assert await second.expire() == 1  # the second failure: that was the last attempt
    assert not await first.fail(again, timeout)  # lost: the line is no longer its to fail
    assert not await first.finish(again, DONE, {"late": True})
    row = await _line_row(database, batch_id, 0)
    assert (row.status, row.failed_attempts) == (FAILED, 2)
    assert json.loads(row.result_json or "")["error"]["code"] == "worker_lost"


async def test_lines_when_given_back_or_left_by_a_crash_then_only_the_crash_is_a_failure(
    database: AsyncEngine,
) -> None:
    """Giving a line back (a rate limit to wait out, a shutdown) costs a claim, not an
    attempt; lines an instance still holds when it starts again (it crashed) do."""
    store = BatchStore(database)
    leases = Leases(database, "gw-a", LEASE_S)
    batch_id = await _batch(store, 3)
    [line, *_] = await leases.claim(batch_id, 3)
    assert await leases.release(line) == 1
    [again] = await leases.claim(batch_id, 1)
    assert (again.line, again.attempt, again.failures) == (0, 2, 0)
    assert await Leases(database, "gw-b", LEASE_S).abandoned() == 0  # none of gw-b's
    assert await leases.abandoned() == 3  # gw-a restarted after a crash
    assert await store.counts(batch_id) == {PENDING: 3}
    assert [(line.line, line.failures) for line in await leases.claim(batch_id, 3)] == [
        (0, 1), (1, 1), (2, 1)]
