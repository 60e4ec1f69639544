"""The Files and Batches API through the official SDK, on a fake engine, SQLite and
PostgreSQL: completion, validation, tenant isolation, cancel, batch prices."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.metering.pricing import to_pico
from gateway.metering.tables import LedgerRow
from gateway.settings import BatchSettings, PriceSettings, PricingSettings, Settings
from tests.conftest import MODEL
from tests.gateway.batches.helpers import (
    TERMINAL,
    input_file,
    output_lines,
    wait_completed,
    wait_for,
)
from tests.gateway.metered import create_key, metered_settings, metering_of, served

BATCH_PRICE = PriceSettings(prompt=Decimal("0.10"), completion=Decimal("0.40"),
                            batch_prompt=Decimal("0.05"), batch_completion=Decimal("0.20"))


def batch_settings(database_url: str, **batches: Any) -> Settings:
    base = metered_settings(database_url)
    options = {"poll_interval_s": 0.05, "concurrency": 4, **batches}
    return base.model_copy(update={"batches": BatchSettings(**options),
                                   "prices": PricingSettings(models={MODEL: BATCH_PRICE})})


def sdk(base_url: str, key: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key["key"], max_retries=0)


async def _keys(base_url: str, *tenants: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as admin:
        return [await create_key(admin, tenant) for tenant in tenants]


async def test_batch_when_created_with_the_sdk_then_every_line_answered_once_at_batch_prices(
    database_url: str,
) -> None:
    async with served(FakeEngine(MODEL), batch_settings(database_url)) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(file=input_file(MODEL, 20), purpose="batch")
        assert (upload.purpose, upload.bytes > 0) == ("batch", True)
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h", metadata={"job": "t1"})
        assert batch.status == "in_progress" and batch.metadata == {"job": "t1"}
        done = await wait_for(client, batch.id, TERMINAL)
        assert done.status == "completed" and done.error_file_id is None
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (20, 20)
        lines = await output_lines(client, done.output_file_id)
        assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(20)]
        body = lines[0]["response"]["body"]
        assert lines[0]["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"]
        async with metering_of(server.state).database.connect() as connection:
            rows = (await connection.execute(
                select(LedgerRow).where(LedgerRow.batch_id == batch.id))).all()
        assert len(rows) == 20 and {row.status for row in rows} <= {"ok", "length"}
        for row in rows:
            cost = (row.prompt_tokens * Decimal("0.05") + row.completion_tokens * Decimal("0.20"))
            assert row.cost_pico == to_pico(cost / 10**6)


async def test_batch_when_input_has_bad_lines_then_failed_naming_each_line(
    database_url: str,
) -> None:
    async with served(FakeEngine(MODEL), batch_settings(database_url)) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        good = input_file(MODEL, 2).getvalue().decode().splitlines()
        bad = io.BytesIO("\n".join([good[0], "{not json", good[0],
                                    '{"custom_id": "x", "method": "GET", "url": '
                                    '"/v1/chat/completions", "body": {"model": "m"}}']).encode())
        upload = await client.files.create(file=("bad.jsonl", bad), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        assert batch.status == "failed" and batch.errors is not None
        found = [(e.line, e.code) for e in batch.errors.data or []]
        assert found == [(2, "invalid_json_line"), (3, "duplicate_custom_id"),
                         (4, "invalid_method")]


async def test_batch_when_a_line_is_over_the_body_limit_then_failed_naming_that_line(
    database_url: str,
) -> None:
    """As OpenAI validates an input file: the batch fails at creation, naming the line (a
    line is capped at the request body limit and is never parsed past it)."""
    base = batch_settings(database_url)
    limits = base.limits.model_copy(update={"max_body_bytes": 2048})
    async with served(FakeEngine(MODEL), base.model_copy(update={"limits": limits})) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        lines = input_file(MODEL, 3).getvalue().decode().splitlines()
        huge = json.loads(lines[1])
        huge["body"]["messages"][0]["content"] = "x" * 4096
        data = io.BytesIO("\n".join([lines[0], json.dumps(huge), lines[2]]).encode())
        upload = await client.files.create(file=("huge.jsonl", data), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        assert batch.status == "failed" and batch.errors is not None
        assert [(e.line, e.code) for e in batch.errors.data or []] == [
            (2, "request_too_large")]
        assert batch.request_counts is not None and batch.request_counts.total == 0


async def test_files_and_batches_when_other_tenant_asks_then_not_found(
    database_url: str,
) -> None:
    async with served(FakeEngine(MODEL), batch_settings(database_url)) as server:
        acme_key, globex_key = await _keys(server.base_url, "acme", "globex")
        acme, globex = sdk(server.base_url, acme_key), sdk(server.base_url, globex_key)
        upload = await acme.files.create(file=input_file(MODEL, 1), purpose="batch")
        batch = await acme.batches.create(input_file_id=upload.id,
                                          endpoint="/v1/chat/completions",
                                          completion_window="24h")
        for call in (globex.files.retrieve(upload.id), globex.files.content(upload.id),
                     globex.batches.retrieve(batch.id), globex.batches.cancel(batch.id),
                     globex.batches.create(input_file_id=upload.id,
                                           endpoint="/v1/chat/completions",
                                           completion_window="24h")):
            with pytest.raises(openai.NotFoundError):
                await call
        assert [f.id async for f in globex.files.list()] == []
        assert [b.id async for b in globex.batches.list()] == []
        assert [b.id async for b in acme.batches.list()] == [batch.id]
        await wait_for(acme, batch.id, TERMINAL)


async def test_batch_when_cancelled_mid_way_then_cancelled_with_the_finished_lines(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, token_delay_s=0.05)
    settings = batch_settings(database_url, concurrency=2)
    async with served(engine, settings) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(file=input_file(MODEL, 30), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await wait_completed(client, batch.id, 3)
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = await wait_for(client, batch.id, TERMINAL)
        assert done.status == "cancelled" and done.cancelled_at is not None
        lines = await output_lines(client, done.output_file_id)
        assert 3 <= len(lines) < 30 and done.request_counts is not None
        assert done.request_counts.completed == len(lines)
        with pytest.raises(openai.BadRequestError):
            await client.batches.cancel(batch.id)


async def test_files_when_deleted_then_gone_and_uploads_over_the_limit_refused(
    database_url: str,
) -> None:
    settings = batch_settings(database_url, max_file_bytes=2048)
    async with served(FakeEngine(MODEL), settings) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(file=input_file(MODEL, 2), purpose="batch")
        assert (await client.files.delete(upload.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(upload.id)
        with pytest.raises(openai.APIStatusError) as refused:
            await client.files.create(file=input_file(MODEL, 40), purpose="batch")
        assert refused.value.status_code == 413
        with pytest.raises(openai.BadRequestError):
            await client.files.create(file=input_file(MODEL, 1), purpose="fine-tune")


async def test_batch_when_lines_force_a_tool_call_then_output_holds_the_calls(
    database_url: str,
) -> None:
    """Batch lines go through the same pipeline: tools and structured outputs included."""
    engine = FakeEngine(MODEL, reply='[{"name": "get_weather", "parameters": {"city": "P"}}]')
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    line = {"custom_id": "t-0", "method": "POST", "url": "/v1/chat/completions", "body": {
        "model": MODEL, "max_tokens": 80, "tools": [tool], "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather?"}]}}
    data = io.BytesIO((json.dumps(line) + "\n").encode())
    data.name = "tools.jsonl"
    async with served(engine, batch_settings(database_url)) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(file=data, purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        done = await wait_for(client, batch.id, TERMINAL)
        [result] = await output_lines(client, done.output_file_id)
        choice = result["response"]["body"]["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["tool_calls"][0]["function"] == {
            "name": "get_weather", "arguments": '{"city": "P"}'}


async def test_batches_when_two_tenants_run_at_once_then_they_share_the_worker(
    database_url: str,
) -> None:
    """Each running batch gets an equal part of the worker's slots: a second tenant's batch
    is not held until the first one has run all its lines."""
    settings = batch_settings(database_url, concurrency=2)
    async with served(FakeEngine(MODEL, token_delay_s=0.02), settings) as server:
        acme_key, globex_key = await _keys(server.base_url, "acme", "globex")
        acme, globex = sdk(server.base_url, acme_key), sdk(server.base_url, globex_key)
        batches = []
        for client in (acme, globex):
            upload = await client.files.create(file=input_file(MODEL, 12), purpose="batch")
            batches.append(await client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions",
                completion_window="24h"))
        await wait_completed(globex, batches[1].id, 3)
        first = await acme.batches.retrieve(batches[0].id)
        assert first.status == "in_progress" and first.request_counts is not None
        assert first.request_counts.completed < 12
        for client, batch in zip((acme, globex), batches, strict=True):
            assert (await wait_for(client, batch.id, TERMINAL)).status == "completed"
