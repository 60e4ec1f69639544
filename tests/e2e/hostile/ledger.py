"""The session gateway's ledger (a SQLite file, ``live_gateway_env``) against what a fuzz
sent: exactly one settled row per accepted request, nothing billed for a refused one."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from gateway.metering.tables import LedgerRow
from tests.conftest import LiveGateway
from tests.e2e.hostile.probe import Exchange

SETTLE_TIMEOUT_S = 90.0
ACCEPTED_STATUSES = frozenset({"ok", "length"})


def ledger_rows(gateway: LiveGateway, tenant: str) -> list[LedgerRow]:
    """The tenant's rows, read with a plain (synchronous) SQLite connection."""
    url = make_url(gateway.env["LLMGW_METERING__DATABASE_URL"]).set(drivername="sqlite")
    engine = create_engine(url, connect_args={"timeout": 30})
    try:
        with engine.connect() as connection:
            result = connection.execute(select(LedgerRow).where(LedgerRow.tenant == tenant))
            return list(result.all())  # type: ignore[arg-type]
    finally:
        engine.dispose()


def settled_rows(gateway: LiveGateway, tenant: str) -> list[LedgerRow]:
    """The tenant's rows once every one is settled; fails if one stays open too long."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        rows = ledger_rows(gateway, tenant)
        open_rows = [row.id for row in rows if row.settled_at is None]
        if not open_rows:
            return rows
        assert time.monotonic() < deadline, (
            f"ledger rows still unsettled after {SETTLE_TIMEOUT_S} s: {open_rows}")
        time.sleep(0.5)


def ledger_problems(rows: Iterable[LedgerRow], exchanges: Iterable[Exchange]) -> list[str]:
    """One settled ok/length row per 200; a refused request has no row, or one that bills
    nothing (an engine's refusal comes after the reservation: settled error or aborted,
    no tokens generated, no cost); no row belongs to a request nobody sent."""
    rows = list(rows)
    by_id = {row.id: row for row in rows}
    counts = Counter(row.id for row in rows)
    found = [f"ledger row {rid} appears {n} times" for rid, n in counts.items() if n > 1]
    sent: set[str] = set()
    for exchange in exchanges:
        if exchange.request_id is None:
            continue
        sent.add(exchange.request_id)
        row = by_id.get(exchange.request_id)
        if exchange.status == 200 and (row is None or row.status not in ACCEPTED_STATUSES):
            found.append(f"accepted request {exchange.request_id} has ledger row "
                         f"{None if row is None else row.status}:\n{exchange.describe()}")
        elif exchange.status != 200 and row is not None and (
                row.status in ACCEPTED_STATUSES or row.completion_tokens or row.cost_pico):
            found.append(f"refused request {exchange.request_id} billed: {row.status}, "
                         f"{row.completion_tokens} tokens, {row.cost_pico} pico$:\n"
                         f"{exchange.describe()}")
    found += [f"ledger row {rid} ({by_id[rid].status}, {by_id[rid].completion_tokens} tokens) "
              "for no request the client could name (a 5xx without x-request-id?)"
              for rid in set(by_id) - sent]
    return found
