"""The ledger database down: refuse before dispatch (503), retry settlement (inline, then
in the background until it is back), settle at start what a stopped gateway journaled.

The outage is injected at the ledger's database calls (the ``Ledger`` / ``KeyStore``
methods raise the ``OperationalError`` SQLAlchemy raises for a lost connection); the
ledger itself is a real SQLite or PostgreSQL database, read back after the outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker

from engine.fake import FakeEngine
from gateway.metering import accounting, backlog
from gateway.metering.journal import journal_path
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.metered import (
    ADMIN,
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
)

BODY = {"model": MODEL, "prompt": "Hello", "max_tokens": 8}


def outage(failures: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real`` failing ``failures`` times (a negative count: forever), then working."""
    left = [failures]

    async def call(*args: Any, **kwargs: Any) -> Any:
        if left[0] != 0:
            left[0] -= 1
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("db down"))
        return await real(*args, **kwargs)

    return call


async def _rows(state: Any) -> list[LedgerRow]:
    sessions = async_sessionmaker(metering_of(state).database)
    async with sessions() as session:
        return list((await session.execute(select(LedgerRow))).scalars())


async def test_reserve_when_database_down_then_503_and_nothing_dispatched(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine(MODEL)
    async with metered_client(engine, metered_settings(database_url)) as (client, state):
        ledger = metering_of(state).ledger
        attempts = len(accounting.RESERVE_RETRY_DELAYS_S) + 1  # every brief retry fails
        monkeypatch.setattr(ledger, "reserve", outage(attempts, ledger.reserve))
        refused = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        assert engine.stats().generation_tokens_total == 0  # never reached the engine
        retried = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        rows = await _rows(state)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json()["error"]["code"] == "metering_unavailable"
    assert retried.status_code == 200
    assert [r.id for r in rows] == [retried.headers["x-request-id"]]


async def test_reserve_when_database_blips_once_then_retried_and_served(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
        client, state):
        ledger = metering_of(state).ledger
        monkeypatch.setattr(ledger, "reserve", outage(1, ledger.reserve))
        served = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        rows = await _rows(state)
    assert served.status_code == 200
    assert [r.id for r in rows] == [served.headers["x-request-id"]]


async def test_key_lookup_when_database_down_then_503_not_401_or_500(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
        client, state):
        key = await create_key(client, "acme")
        keys = metering_of(state).keys
        monkeypatch.setattr(keys, "verify", outage(-1, keys.verify))
        response = await client.post("/v1/completions", json=BODY, headers=bearer(key))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "metering_unavailable"


async def test_settle_when_database_briefly_down_then_retried_and_billed_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
        client, state):
        ledger = metering_of(state).ledger
        failing = outage(2, ledger.settle)
        calls: list[tuple[Any, ...]] = []

        async def settle(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return await failing(*args, **kwargs)

        monkeypatch.setattr(ledger, "settle", settle)
        plain = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        rows = await _rows(state)
    assert plain.status_code == 200
    assert len(calls) == 3  # two failed attempts, then the one that settled: retried
    [row] = rows
    assert row.settled_at is not None and not row.recovered
    assert (row.prompt_tokens, row.completion_tokens, row.status) == (5, 8, "length")


async def test_settle_when_database_down_past_inline_retries_then_billed_once_it_is_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_S", (0.05,))
    inline = len(accounting.SETTLE_RETRY_DELAYS_S) + 1
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
        client, state):
        ledger = metering_of(state).ledger
        monkeypatch.setattr(ledger, "settle", outage(inline + 3, ledger.settle))
        response = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        assert len(metering_of(state).accounting.backlog) == 1  # waiting for the database
        await _until(lambda: len(metering_of(state).accounting.backlog) == 0)
        [row] = await _rows(state)
    assert response.status_code == 200 and row.id == response.headers["x-request-id"]
    assert row.settled_at is not None and not row.recovered and row.cost_pico >= 0
    assert (row.prompt_tokens, row.completion_tokens, row.status) == (5, 8, "length")


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_settle_when_database_down_until_shutdown_then_billed_from_the_journal_on_restart(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settlement waits in the journal across the restart and is settled before startup
    recovery (which would close the row at no cost); a second recovery touches nothing."""
    monkeypatch.setattr(accounting, "SETTLE_RETRY_DELAYS_S", (0.01, 0.01))
    settings = metered_settings(database_url)
    journal = journal_path(settings.data_dir, settings.metering.instance_id)
    async with metered_client(FakeEngine(MODEL), settings) as (client, state):
        ledger = metering_of(state).ledger
        monkeypatch.setattr(ledger, "settle", outage(-1, ledger.settle))
        response = await client.post("/v1/completions", json=BODY, headers=ADMIN)
        [open_row] = await _rows(state)
    assert response.status_code == 200  # the answer was delivered; its row stays open
    assert open_row.settled_at is None and open_row.status == "reserved"
    assert journal.is_file()  # kept for the next start
    async with metered_client(FakeEngine(MODEL), settings) as (_, restarted):
        rows = await _rows(restarted)
        sessions = async_sessionmaker(metering_of(restarted).database)
        async with sessions() as session:
            count = await session.scalar(select(func.count(LedgerRow.id)))
        again = await metering_of(restarted).ledger.recover("test-instance", open_row.created_at)
    [row] = rows
    assert count == 1 and row.id == response.headers["x-request-id"]
    assert row.settled_at is not None and not row.recovered
    assert (row.prompt_tokens, row.completion_tokens, row.status) == (5, 8, "length")
    assert row.cost_pico > 0 and not journal.exists()  # billed, the journal compacted
    assert again == 0  # a second recovery touches nothing
