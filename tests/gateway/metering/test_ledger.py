"""The write-ahead ledger on SQLite and PostgreSQL: reserve, settle once, recover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.metering.database import create_database_engine, migrate
from gateway.metering.ledger import Ledger, Reservation, Settlement, utcnow


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    engine = create_database_engine(database_url)
    await migrate(engine)
    try:
        yield Ledger(engine)
    finally:
        await engine.dispose()


def reservation(request_id: str, instance: str = "a", age_s: float = 0,
                key: str = "k1", tenant: str = "acme") -> Reservation:
    return Reservation(request_id, key, tenant, "m", 1, reserved_tokens=100,
                       reserved_pico=5_000, instance_id=instance,
                       created_at=utcnow() - timedelta(seconds=age_s))


SETTLED = Settlement("ok", prompt_tokens=10, cached_tokens=2, completion_tokens=5,
                     cost_pico=1_234)


async def test_settle_when_called_twice_then_second_is_a_noop(ledger: Ledger) -> None:
    await ledger.reserve(reservation("r1"))
    assert await ledger.settle("r1", SETTLED)
    assert not await ledger.settle("r1", Settlement("error", 99, 0, 99, 99))
    row = await ledger.row("r1")
    assert row is not None
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.cost_pico) == (
        "ok", 10, 5, 1_234)


async def test_reserve_when_request_id_reused_then_refused(ledger: Ledger) -> None:
    await ledger.reserve(reservation("r1"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await ledger.reserve(reservation("r1"))


async def test_committed_spend_when_rows_open_and_settled_then_holds_and_costs_count(
    ledger: Ledger,
) -> None:
    await ledger.reserve(reservation("open"))
    await ledger.reserve(reservation("done"))
    await ledger.settle("done", SETTLED)
    await ledger.reserve(reservation("other-key", key="k2"))
    await ledger.reserve(reservation("other-tenant", key="k3", tenant="globex"))
    since = utcnow() - timedelta(hours=1)
    assert await ledger.committed_spend(since, key_id="k1") == 5_000 + 1_234
    assert await ledger.committed_spend(utcnow() + timedelta(seconds=5), key_id="k1") == 0
    # a tenant's spend is every one of its keys' (k1 and k2), no other tenant's
    assert await ledger.committed_spend(since, tenant="acme") == 5_000 + 1_234 + 5_000
    with pytest.raises(ValueError, match="key's or a tenant's"):
        await ledger.committed_spend(since)


async def test_recover_when_rows_left_open_then_own_and_stale_ones_closed(
    ledger: Ledger,
) -> None:
    await ledger.reserve(reservation("mine", instance="a"))
    await ledger.reserve(reservation("stale", instance="b", age_s=7200))
    await ledger.reserve(reservation("live-elsewhere", instance="b"))
    await ledger.reserve(reservation("settled", instance="a"))
    await ledger.settle("settled", SETTLED)
    closed = await ledger.recover("a", utcnow() - timedelta(hours=1))
    assert closed == 2
    for request_id in ("mine", "stale"):
        row = await ledger.row(request_id)
        assert row is not None and (row.status, row.recovered, row.cost_pico) == (
            "error", True, 0)
        assert row.reserved_pico == 5_000 and row.settled_at is not None
    live = await ledger.row("live-elsewhere")
    assert live is not None and live.settled_at is None
    settled = await ledger.row("settled")
    assert settled is not None and not settled.recovered and settled.status == "ok"
