"""The settlement journal and the backlog over it: durable before queued, replayed once,
torn lines tolerated, compacted when drained. Replays settle a real ledger (SQLite and
PostgreSQL); the outage is injected at ``Ledger.settle``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from gateway.metering.backlog import SettlementBacklog
from gateway.metering.database import create_database_engine, migrate
from gateway.metering.journal import (
    PendingSettlement,
    SettlementJournal,
    encode,
    journal_path,
)
from gateway.metering.ledger import Ledger, Reservation, Settlement, utcnow

FAST = (0.01,)


def pending(request_id: str, completion: int = 5) -> PendingSettlement:
    result = Settlement("length", prompt_tokens=10, cached_tokens=2,
                        completion_tokens=completion, cost_pico=1_234 + completion,
                        spec_drafted_tokens=4, spec_accepted_tokens=3, ttft_ms=12.5,
                        latency_ms=250.25, estimated=True)
    return PendingSettlement(request_id, "m", "acme", result,
                             Decimal("0.0000012340000001") + completion)


async def database_down(request_id: str, result: Settlement) -> bool:
    raise OperationalError("UPDATE ledger ...", {}, ConnectionRefusedError("db down"))


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    engine = create_database_engine(database_url)
    await migrate(engine)
    try:
        yield Ledger(engine)
    finally:
        await engine.dispose()


async def reserve(ledger: Ledger, *request_ids: str) -> None:
    for request_id in request_ids:
        await ledger.reserve(Reservation(request_id, "k1", "acme", "m", 1, 100, 5_000,
                                         "journal-test", utcnow()))


def test_journal_when_entries_appended_then_read_back_whole_and_in_order(
    tmp_path: Path,
) -> None:
    journal = SettlementJournal(tmp_path / "settlements" / "a.jsonl")
    assert journal.read() == []
    entries = [pending("r1"), pending("r2", completion=7)]
    for entry in entries:
        journal.append(entry)
    assert journal.read() == entries  # request, model, tenant, every result field, exact cost


@pytest.mark.parametrize("tail", [b"half", b"\x00" * 40], ids=["half-a-line", "zeros"])
def test_journal_when_last_line_torn_then_earlier_entries_kept_and_later_ones_readable(
    tmp_path: Path, tail: bytes,
) -> None:
    journal = SettlementJournal(tmp_path / "a.jsonl")
    journal.append(pending("r1"))
    journal.append(pending("r2"))
    torn = encode(pending("r3"))
    with journal.path.open("ab") as file:  # a crash mid-append: never acknowledged
        file.write(torn[: len(torn) // 2] if tail == b"half" else tail)
    assert [p.request_id for p in journal.read()] == ["r1", "r2"]
    journal.append(pending("r4"))  # after a restart: starts on a line of its own
    assert [p.request_id for p in journal.read()] == ["r1", "r2", "r4"]


def test_journal_when_rewritten_then_holds_exactly_those_and_is_removed_when_empty(
    tmp_path: Path,
) -> None:
    journal = SettlementJournal(tmp_path / "a.jsonl")
    for request_id in ("r1", "r2", "r3"):
        journal.append(pending(request_id))
    journal.rewrite([pending("r2")])
    assert [p.request_id for p in journal.read()] == ["r2"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]  # no temporary file left
    journal.rewrite([])
    assert not journal.path.exists() and journal.read() == []


def test_journal_path_when_instance_id_has_odd_characters_then_one_file_in_the_data_dir(
    tmp_path: Path,
) -> None:
    path = journal_path(tmp_path, "../pod/7 a")
    assert path.parent == tmp_path / "settlements"
    assert path.name == ".._pod_7_a.jsonl"


async def test_backlog_when_added_then_journaled_before_it_is_queued(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path / "a.jsonl")
    backlog = SettlementBacklog(database_down, journal, backoff_s=(60.0,))
    await backlog.add(pending("r1"))
    assert len(backlog) == 1
    assert [p.request_id for p in journal.read()] == ["r1"]  # on disk when add returns
    await backlog.close(timeout_s=1)
    assert [p.request_id for p in journal.read()] == ["r1"]  # kept for the next start


async def test_backlog_when_drained_then_journal_compacted_to_what_still_waits(
    tmp_path: Path,
) -> None:
    journal = SettlementJournal(tmp_path / "a.jsonl")
    settled: list[str] = []
    down = True

    async def settle(request_id: str, result: Settlement) -> bool:
        if down or (request_id == "r2" and settled):
            return await database_down(request_id, result)
        settled.append(request_id)
        return True

    backlog = SettlementBacklog(settle, journal, backoff_s=(60.0,))
    await backlog.add(pending("r1"))
    await backlog.add(pending("r2"))
    down = False
    assert not await backlog.try_all()  # r1 lands, then the database fails again
    assert [p.request_id for p in journal.read()] == ["r2"]
    settled.clear()
    assert await backlog.try_all()
    assert not journal.path.exists() and len(backlog) == 0
    await backlog.close(timeout_s=1)


async def _journal_written_by_a_gateway_that_died(path: Path,
                                                  *entries: PendingSettlement) -> None:
    died = SettlementBacklog(database_down, SettlementJournal(path), backoff_s=(60.0,))
    for entry in entries:
        await died.add(entry)
    await died.close(timeout_s=0.1)  # what kill -9 leaves is the same file


def restarted(ledger: Ledger, path: Path, counted: list[str]) -> SettlementBacklog:
    """The backlog of a gateway started again on the same data directory."""
    return SettlementBacklog(ledger.settle, SettlementJournal(path),
                             lambda p: counted.append(p.request_id), FAST)


async def test_replay_when_journal_left_by_a_crash_then_each_row_settled_once_and_again_nothing(
    ledger: Ledger, tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    await reserve(ledger, "r1", "r2")
    await _journal_written_by_a_gateway_that_died(path, pending("r1"), pending("r2", 7))
    counted: list[str] = []
    assert await restarted(ledger, path, counted).replay() == 2
    assert counted == ["r1", "r2"] and not path.exists()  # counted once, compacted
    rows = {rid: await ledger.row(rid) for rid in ("r1", "r2")}
    for rid, completion in (("r1", 5), ("r2", 7)):
        row = rows[rid]
        assert row is not None and row.settled_at is not None and not row.recovered
        assert (row.status, row.prompt_tokens, row.cached_tokens, row.completion_tokens,
                row.cost_pico, row.estimated) == ("length", 10, 2, completion,
                                                  1_234 + completion, True)
    # A crash after settling but before compaction: the same journal replayed again.
    await _journal_written_by_a_gateway_that_died(path, pending("r1"), pending("r2", 7))
    assert await restarted(ledger, path, counted).replay() == 2
    assert counted == ["r1", "r2"] and not path.exists()  # nothing counted twice
    for rid in ("r1", "r2"):
        row, first = await ledger.row(rid), rows[rid]
        assert row is not None and first is not None
        assert (row.settled_at, row.completion_tokens) == (first.settled_at,
                                                           first.completion_tokens)


async def test_replay_when_database_fails_meanwhile_then_raised_and_journal_kept(
    ledger: Ledger, tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    await reserve(ledger, "r1")
    await _journal_written_by_a_gateway_that_died(path, pending("r1"))
    backlog = SettlementBacklog(database_down, SettlementJournal(path), backoff_s=FAST)
    with pytest.raises(OperationalError):
        await backlog.replay()
    assert [p.request_id for p in SettlementJournal(path).read()] == ["r1"]
    row = await ledger.row("r1")
    assert row is not None and row.settled_at is None  # left for the next try, not recovered
