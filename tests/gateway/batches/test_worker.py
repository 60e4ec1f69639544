"""The batch worker with lines that fail, on a fake engine, SQLite and PostgreSQL.

A line that always fails on the engine, or runs past ``batches.line_timeout_s``, is run
``batches.max_attempts`` times and then lands in the error file (OpenAI's shape: no
response, an error code and message), while the rest of its batch and another tenant's
batch complete; a holder that died (a lapsed lease) counts as a failed attempt. Every
attempt is billed, once, the tokens the engine generated for it (an aborted or failed one
too), an answer is billed once, and the ledger's totals equal the engine's."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import openai
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from gateway.batches.jsonl import InputLine
from gateway.batches.leases import Leases
from gateway.batches.store import BatchStore, NewBatch
from gateway.batches.tables import BatchLineRow
from gateway.metering.database import create_database_engine, migrate
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import to_pico
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.batches.helpers import TERMINAL, output_lines, wait_for
from tests.gateway.batches.test_batches import batch_settings, sdk
from tests.gateway.metered import create_key, metering_of, served

FAIL_AFTER = 3  # tokens a "poison" line gets before the engine fails it, every time
STALL_AFTER = 2  # tokens a "stall" line (a "flaky" one: its first time) gets, then nothing
MAX_TOKENS = 6


@dataclass
class TroubleEngine(FakeEngine):
    """FakeEngine, but a prompt naming ``poison`` fails after ``FAIL_AFTER`` tokens, one
    naming ``stall`` stops after ``STALL_AFTER`` tokens until it is aborted, and one naming
    ``flaky`` stalls so its first time only."""

    seen: set[str] = field(default_factory=set)
    aborts: dict[str, asyncio.Event] = field(default_factory=dict)

    def _aborted(self, request_id: str) -> asyncio.Event:
        return self.aborts.setdefault(request_id, asyncio.Event())

    async def abort(self, request_id: str) -> None:
        await super().abort(request_id)
        self._aborted(request_id).set()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        prompt = "".join(map(chr, request.prompt_token_ids))
        first = prompt not in self.seen
        self.seen.add(prompt)
        fail_at = FAIL_AFTER if "poison" in prompt else None
        stalls = "stall" in prompt or ("flaky" in prompt and first)
        outputs = cast(AsyncGenerator[EngineOutput, None], super().generate(request))
        try:
            count = 0
            async for out in outputs:
                yield out
                count += 1
                if count == fail_at:
                    raise EngineUnavailableError("poisoned")
                if stalls and count == STALL_AFTER:
                    await self._aborted(request.request_id).wait()  # until the gateway aborts
                    return
        finally:
            await outputs.aclose()


def _body(content: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0,
            "messages": [{"role": "user", "content": content}]}


async def _submit(client: openai.AsyncOpenAI, contents: list[str]) -> str:
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST",
                         "url": "/v1/chat/completions", "body": _body(content)})
             for i, content in enumerate(contents)]
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    data.name = "input.jsonl"
    upload = await client.files.create(file=data, purpose="batch")
    batch = await client.batches.create(input_file_id=upload.id,
                                        endpoint="/v1/chat/completions", completion_window="24h")
    return batch.id


async def _keys(base_url: str, *tenants: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as admin:
        return [await create_key(admin, tenant) for tenant in tenants]


async def _ledger(database: AsyncEngine) -> list[Any]:
    async with database.connect() as connection:
        return list((await connection.execute(select(LedgerRow))).all())


def _attempts(rows: list[Any], batch_id: str, line: int) -> list[Any]:
    """The line's ledger rows, one per attempt that reached the engine, in order."""
    prefix = f"{batch_id}-{line}-"
    return sorted((row for row in rows if row.id.startswith(prefix)),
                  key=lambda row: int(row.id.removeprefix(prefix)))


def _assert_billed_exactly(rows: list[Any], engine: FakeEngine) -> None:
    """Each row costs its own tokens at the batch prices, and together they are every
    token the engine counted: none lost, none counted twice."""
    for row in rows:
        cost = row.prompt_tokens * Decimal("0.05") + row.completion_tokens * Decimal("0.20")
        assert row.cost_pico == to_pico(cost / 10**6), row.id
    stats = engine.stats()
    assert sum(row.completion_tokens for row in rows) == stats.generation_tokens_total
    assert sum(row.prompt_tokens for row in rows) == stats.prompt_tokens_total


async def test_line_when_it_always_fails_on_the_engine_then_retried_then_in_the_error_file(
    database_url: str,
) -> None:
    engine = TroubleEngine(MODEL)
    async with served(engine, batch_settings(database_url, max_attempts=3)) as server:
        acme_key, globex_key = await _keys(server.base_url, "acme", "globex")
        acme, globex = sdk(server.base_url, acme_key), sdk(server.base_url, globex_key)
        contents = [f"Say {i}." for i in range(6)]
        contents[2] = "Say poison."
        acme_batch = await _submit(acme, contents)
        globex_batch = await _submit(globex, [f"Hello {i}." for i in range(4)])
        done = await wait_for(acme, acme_batch, TERMINAL)
        other = await wait_for(globex, globex_batch, TERMINAL)
        assert done.status == "completed" and done.request_counts is not None
        counts = done.request_counts
        assert (counts.total, counts.completed, counts.failed) == (6, 5, 1)
        answers = await output_lines(acme, done.output_file_id)
        assert [line["custom_id"] for line in answers] == ["req-0", "req-1", "req-3", "req-4",
                                                           "req-5"]
        [error] = await output_lines(acme, done.error_file_id)
        assert (error["custom_id"], error["response"]) == ("req-2", None)
        assert error["error"]["code"] == "engine_unavailable"
        assert "attempt 3 of 3" in error["error"]["message"]
        assert other.status == "completed" and other.request_counts is not None
        assert (other.request_counts.completed, other.request_counts.failed) == (4, 0)
        rows = await _ledger(metering_of(server.state).database)
    poisoned = _attempts(rows, acme_batch, 2)
    assert [(row.status, row.completion_tokens) for row in poisoned] == [
        ("error", FAIL_AFTER)] * 3  # each failed attempt pays its tokens, once
    assert all(len(_attempts(rows, acme_batch, line)) == 1 for line in (0, 1, 3, 4, 5))
    _assert_billed_exactly(rows, engine)


async def test_line_when_it_runs_past_the_time_limit_then_aborted_billed_and_retried(
    database_url: str,
) -> None:
    engine = TroubleEngine(MODEL)
    settings = batch_settings(database_url, max_attempts=3, line_timeout_s=1.5)
    async with served(engine, settings) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        batch_id = await _submit(client, ["Say 0.", "Say flaky.", "Say stall.", "Say 3."])
        done = await wait_for(client, batch_id, TERMINAL)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (3, 1)
        answers = await output_lines(client, done.output_file_id)
        assert [line["custom_id"] for line in answers] == ["req-0", "req-1", "req-3"]
        [error] = await output_lines(client, done.error_file_id)
        assert (error["custom_id"], error["response"]) == ("req-2", None)
        assert error["error"]["code"] == "line_timeout"
        rows = await _ledger(metering_of(server.state).database)
    flaky, stalled = _attempts(rows, batch_id, 1), _attempts(rows, batch_id, 2)
    assert [(row.status, row.completion_tokens) for row in flaky] == [
        ("aborted", STALL_AFTER), ("length", MAX_TOKENS)]  # the answer after it is paid too
    assert [(row.status, row.completion_tokens) for row in stalled] == [
        ("aborted", STALL_AFTER)] * 3
    assert all(row.cost_pico > 0 for row in flaky + stalled)
    _assert_billed_exactly(rows, engine)


async def _batch_with_dead_holders(database_url: str) -> str:
    """A 3-line batch of tenant acme: line 0's holders died twice and a third holds it
    now, line 1's first holder holds it; both holders are dead (their leases lapsed)."""
    database = create_database_engine(database_url)
    try:
        await migrate(database)

        async def groups() -> AsyncIterator[list[InputLine]]:
            yield [InputLine(f"req-{i}", _body(f"Say {i}.")) for i in range(3)]

        view = await BatchStore(database).create(
            NewBatch("acme", None, "/v1/chat/completions", "file-x"), groups())
        dead = Leases(database, "gw-dead", 60, lambda: utcnow() - timedelta(minutes=5))
        sweeper = Leases(database, "gw-sweeper", 60)
        for _ in range(2):
            assert len(await dead.claim(view.row.id, 1)) == 1
            assert await sweeper.expire() == 1
        assert [line.line for line in await dead.claim(view.row.id, 2)] == [0, 1]
        return view.row.id
    finally:
        await database.dispose()


async def test_line_when_its_holder_died_then_the_lapsed_lease_is_a_failed_attempt(
    database_url: str,
) -> None:
    batch_id = await _batch_with_dead_holders(database_url)
    engine = TroubleEngine(MODEL)
    async with served(engine, batch_settings(database_url, max_attempts=3)) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        done = await wait_for(client, batch_id, TERMINAL)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
        [error] = await output_lines(client, done.error_file_id)
        assert (error["custom_id"], error["error"]["code"]) == ("req-0", "worker_lost")
        assert "attempt 3 of 3" in error["error"]["message"]
        database = metering_of(server.state).database
        async with database.connect() as connection:
            lines = (await connection.execute(
                select(BatchLineRow.line, BatchLineRow.attempts, BatchLineRow.failed_attempts)
                .where(BatchLineRow.batch_id == batch_id).order_by(BatchLineRow.line))).all()
        rows = await _ledger(database)
    assert [tuple(line) for line in lines] == [(0, 3, 3), (1, 2, 1), (2, 1, 0)]
    assert sorted(row.id for row in rows) == [f"{batch_id}-1-2", f"{batch_id}-2-1"]
    _assert_billed_exactly(rows, engine)
