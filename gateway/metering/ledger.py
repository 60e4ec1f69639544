"""The write-ahead ledger: a row is reserved before dispatch and settled exactly once.

``reserve`` inserts the row with the worst case; ``settle`` fills in the actual tokens and
cost only if the row is still open (``settled_at IS NULL``), so a second settlement is a
no-op and nothing is counted twice. ``recover`` closes rows a crash left open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.metering.tables import RESERVED, LedgerRow, LedgerTagRow
from gateway.serving.attribution import NOBODY, Attribution


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Reservation:
    request_id: str
    key_id: str | None
    tenant: str
    model: str
    n: int
    reserved_tokens: int
    reserved_pico: int
    instance_id: str
    created_at: datetime
    batch_id: str | None = None
    attribution: Attribution = NOBODY  # the end user and tags the row is kept under
    adapter: str | None = None


@dataclass(frozen=True)
class Settlement:
    status: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_pico: int
    spec_drafted_tokens: int | None = None
    spec_accepted_tokens: int | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    estimated: bool = False
    response_cached: bool = False
    reasoning_tokens: int = 0  # of completion_tokens: inside a reasoning span

    def __post_init__(self) -> None:
        if self.status not in ("ok", "length", "aborted", "error"):
            raise ValueError(f"unknown settlement status {self.status!r}")
        if min(self.prompt_tokens, self.cached_tokens, self.completion_tokens,
               self.cost_pico) < 0:
            raise ValueError("settled counts must be >= 0")


class Ledger:
    """Each request's two writes (``reserve``, ``settle``) are one Core statement each, in
    autocommit: one round trip to the database instead of BEGIN, the statement and COMMIT,
    and no ORM unit of work on the request's path. A reservation with tags is a transaction
    of two statements."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def reserve(self, entry: Reservation) -> None:
        row = insert(LedgerRow).values(
            id=entry.request_id, key_id=entry.key_id, tenant=entry.tenant, model=entry.model,
            n=entry.n, status=RESERVED, prompt_tokens=0, cached_tokens=0,
            completion_tokens=0, reserved_tokens=entry.reserved_tokens,
            reserved_pico=entry.reserved_pico, cost_pico=0, estimated=False, response_cached=False,
            recovered=False,
            instance_id=entry.instance_id, created_at=entry.created_at, batch_id=entry.batch_id,
            end_user=entry.attribution.user, adapter=entry.adapter, reasoning_tokens=0,
        )
        tags = [{"request_id": entry.request_id, "tag": tag, "tenant": entry.tenant}
                for tag in entry.attribution.tags]
        if not tags:
            async with self._autocommit.connect() as connection:
                await connection.execute(row)
            return
        async with self._engine.begin() as connection:
            await connection.execute(row)  # the row first: a retry's duplicate fails on it
            await connection.execute(insert(LedgerTagRow), tags)

    async def settle(self, request_id: str, result: Settlement) -> bool:
        """Close the row with actual usage; False if it was already settled."""
        statement = (
            update(LedgerRow)
            .where(LedgerRow.id == request_id, LedgerRow.settled_at.is_(None))
            .values(
                status=result.status, prompt_tokens=result.prompt_tokens,
                cached_tokens=result.cached_tokens,
                completion_tokens=result.completion_tokens, cost_pico=result.cost_pico,
                spec_drafted_tokens=result.spec_drafted_tokens,
                spec_accepted_tokens=result.spec_accepted_tokens,
                ttft_ms=result.ttft_ms, latency_ms=result.latency_ms,
                estimated=result.estimated, response_cached=result.response_cached,
                reasoning_tokens=result.reasoning_tokens, settled_at=utcnow(),
            )
        )
        async with self._autocommit.connect() as connection:
            outcome = await connection.execute(statement)
        return outcome.rowcount == 1

    async def committed_spend(self, since: datetime, *, key_id: str | None = None,
                              tenant: str | None = None, user: str | None = None) -> int:
        """Pico-dollars a key (or a whole tenant, or one end user of a tenant) has spent
        since ``since``: settled cost, or the hold if the row is still open."""
        if (key_id is None) == (tenant is None) or (user is not None and tenant is None):
            raise ValueError("committed spend is a key's or a tenant's (or a tenant's end user's)")
        whose = LedgerRow.key_id == key_id if key_id is not None else LedgerRow.tenant == tenant
        if user is not None:
            whose = whose & (LedgerRow.end_user == user)
        settled = select(func.coalesce(func.sum(LedgerRow.cost_pico), 0)).where(
            whose, LedgerRow.created_at >= since, LedgerRow.settled_at.is_not(None))
        held = select(func.coalesce(func.sum(LedgerRow.reserved_pico), 0)).where(
            whose, LedgerRow.created_at >= since, LedgerRow.settled_at.is_(None))
        async with self._sessions() as session:
            return int(await session.scalar(settled) or 0) + int(
                await session.scalar(held) or 0)

    async def recover(self, instance_id: str, orphaned_before: datetime) -> int:
        """Close rows a crash left open: this instance's, and anyone's older than the cutoff.

        The tokens they produced are unknown (the engine died with the process): they are
        marked ``error``/``recovered`` at cost 0, the worst case kept in ``reserved_*``.
        """
        statement = (
            update(LedgerRow)
            .where(LedgerRow.settled_at.is_(None))
            .where((LedgerRow.instance_id == instance_id)
                   | (LedgerRow.created_at < orphaned_before))
            .values(status="error", recovered=True, settled_at=utcnow())
        )
        async with self._sessions.begin() as session:
            outcome = await session.execute(statement)
        return int(getattr(outcome, "rowcount", 0))

    async def any_answered(self, request_ids: list[str]) -> bool:
        """Whether any of these requests was settled as answered (``ok``/``length``) with
        tokens recorded: a batch line's retry asks, so that its answer is paid once (an
        attempt cut short pays its own tokens and does not count)."""
        if not request_ids:
            return False
        statement = select(func.count()).where(
            LedgerRow.id.in_(request_ids), LedgerRow.status.in_(("ok", "length")),
            (LedgerRow.prompt_tokens > 0) | (LedgerRow.completion_tokens > 0))
        async with self._sessions() as session:
            return int(await session.scalar(statement) or 0) > 0

    async def distinct_values(self, tenant: str, since: datetime) -> tuple[set[str], set[str]]:
        """The end users and the tags a tenant's rows since ``since`` were kept under."""
        users = select(LedgerRow.end_user).distinct().where(
            LedgerRow.tenant == tenant, LedgerRow.created_at >= since,
            LedgerRow.end_user.is_not(None))
        tags = select(LedgerTagRow.tag).distinct().join(
            LedgerRow, LedgerRow.id == LedgerTagRow.request_id).where(
            LedgerTagRow.tenant == tenant, LedgerRow.created_at >= since)
        async with self._sessions() as session:
            return ({str(u) for u in await session.scalars(users)},
                    {str(t) for t in await session.scalars(tags)})

    async def row(self, request_id: str) -> LedgerRow | None:
        async with self._sessions() as session:
            return await session.get(LedgerRow, request_id)
