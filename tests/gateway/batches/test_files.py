"""Files through the official SDK and the store, on SQLite and PostgreSQL: another
tenant's file cannot be deleted (404), a tenant's stored bytes are bounded by its quota,
``expires_after`` makes a file expire and the worker delete it, content is stored and
read in chunks, and uploads, batch creation and output files run in bounded memory."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import openai
import pytest
from sqlalchemy import func, select, update

from engine.fake import FakeEngine
from gateway.batches import files as files_module
from gateway.batches.files import FileStore
from gateway.batches.leases import Leases
from gateway.batches.output import Finalizer
from gateway.batches.service import Batches
from gateway.batches.store import BatchStore, NewBatch
from gateway.batches.tables import DONE, BatchLineRow, FileChunkRow, FileRow
from gateway.metering.database import create_database_engine, migrate
from gateway.metering.ledger import utcnow
from gateway.settings import BatchSettings
from tests.conftest import MODEL
from tests.gateway.batches.helpers import TERMINAL, input_file, output_lines, wait_for
from tests.gateway.batches.test_batches import batch_settings, sdk
from tests.gateway.metered import create_key, metering_of, served

MIB = 1 << 20


async def _keys(base_url: str, *tenants: str) -> list[dict[str, str]]:
    async with httpx.AsyncClient(base_url=base_url) as admin:
        return [await create_key(admin, tenant) for tenant in tenants]


async def test_file_when_another_tenant_deletes_it_then_404_and_it_stays(
    database_url: str,
) -> None:
    async with served(FakeEngine(MODEL), batch_settings(database_url)) as server:
        acme_key, globex_key = await _keys(server.base_url, "acme", "globex")
        acme, globex = sdk(server.base_url, acme_key), sdk(server.base_url, globex_key)
        upload = await acme.files.create(file=input_file(MODEL, 2), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            await globex.files.delete(upload.id)
        kept = await acme.files.retrieve(upload.id)
        content = await acme.files.content(upload.id)
    assert kept.id == upload.id and content.read() == input_file(MODEL, 2).read()


async def test_upload_when_it_would_pass_the_tenant_quota_then_413_until_files_deleted(
    database_url: str,
) -> None:
    settings = batch_settings(database_url, max_tenant_file_bytes=4096)
    async with served(FakeEngine(MODEL), settings) as server:
        acme_key, globex_key = await _keys(server.base_url, "acme", "globex")
        acme, globex = sdk(server.base_url, acme_key), sdk(server.base_url, globex_key)
        size = len(input_file(MODEL, 15).read())
        assert 2048 < size <= 4096
        first = await acme.files.create(file=input_file(MODEL, 15), purpose="batch")
        with pytest.raises(openai.APIStatusError) as refused:
            await acme.files.create(file=input_file(MODEL, 15), purpose="batch")
        await globex.files.create(file=input_file(MODEL, 15), purpose="batch")  # its own
        await acme.files.delete(first.id)
        again = await acme.files.create(file=input_file(MODEL, 15), purpose="batch")
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "file_quota_exceeded"  # type: ignore[index]
    assert again.bytes == size


async def test_upload_with_expires_after_then_it_expires_and_the_worker_deletes_it(
    database_url: str,
) -> None:
    settings = batch_settings(database_url, lease_s=0.3)  # the worker's sweep: lease_s / 3
    async with served(FakeEngine(MODEL), settings) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(
            file=input_file(MODEL, 1), purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600})
        for wrong in ({"anchor": "created_at", "seconds": 60}, {"anchor": "last_used",
                                                               "seconds": 3600}):
            with pytest.raises(openai.BadRequestError):
                await client.files.create(file=input_file(MODEL, 1), purpose="batch",
                                          expires_after=wrong)  # type: ignore[arg-type]
        database = metering_of(server.state).database
        async with database.begin() as connection:  # an hour later
            await connection.execute(update(FileRow).where(FileRow.id == upload.id)
                                     .values(expires_at=utcnow() - timedelta(seconds=1)))
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(upload.id)
        listed = [f.id async for f in client.files.list()]
        for _ in range(100):
            async with database.connect() as connection:
                left = await connection.scalar(select(func.count()).select_from(FileChunkRow)
                                               .where(FileChunkRow.file_id == upload.id))
                rows = await connection.scalar(select(func.count()).select_from(FileRow))
            if not left and not rows:
                break
            await asyncio.sleep(0.05)
    assert upload.expires_at == upload.created_at + 3600
    assert listed == [] and left == 0 and rows == 0


async def test_files_when_larger_than_a_chunk_then_stored_in_chunks_and_read_back_whole(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(files_module, "CHUNK_BYTES", 256)
    async with served(FakeEngine(MODEL), batch_settings(database_url)) as server:
        (key,) = await _keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        upload = await client.files.create(file=input_file(MODEL, 30), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        done = await wait_for(client, batch.id, TERMINAL)
        lines = await output_lines(client, done.output_file_id)
        echoed = (await client.files.content(upload.id)).read()
        async with metering_of(server.state).database.connect() as connection:
            chunks = await connection.scalar(select(func.count()).select_from(FileChunkRow)
                                             .where(FileChunkRow.file_id == upload.id))
    assert echoed == input_file(MODEL, 30).read() and chunks == -(-len(echoed) // 256)
    assert done.status == "completed"
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(30)]


def _jsonl_line(i: int) -> bytes:
    return (json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
                        "body": {"model": MODEL, "prompt": "p" * 900}}) + "\n").encode()


@pytest.mark.slow
async def test_upload_batch_and_output_of_24_mib_when_handled_then_memory_stays_bounded(
    database_url: str,
) -> None:
    engine = create_database_engine(database_url)
    await migrate(engine)
    lines = 24 * MIB // len(_jsonl_line(0))

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(lines):
            yield _jsonl_line(i)

    peaks = {}
    try:
        tracemalloc.start()
        store = FileStore(engine)
        info = await store.upload("acme", "in.jsonl", "batch", pieces())
        peaks["upload"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        batches = Batches(store, BatchStore(engine), None,  # type: ignore[arg-type]
                          BatchSettings(max_requests=lines), "gw", 1 << 20, 64)
        view = await batches.create(NewBatch("acme", None, "/v1/completions", info.id))
        peaks["create"] = tracemalloc.get_traced_memory()[1]
        async with engine.begin() as connection:
            await connection.execute(update(BatchLineRow).values(status=DONE,
                                                                 result_json="r" * 1000))
        assert await Leases(engine, "gw", 60).start_finalizing(view.row)
        tracemalloc.reset_peak()
        assert await Finalizer(engine, "gw").finalize(view.row.id) == "completed"
        peaks["output"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await engine.dispose()
    assert info.size >= 24 * MIB and view.counts == {"pending": lines}
    assert all(peak < 16 * MIB for peak in peaks.values()), peaks  # less than the file


@pytest.mark.slow
async def test_batch_create_when_input_is_large_then_the_event_loop_keeps_ticking(
    database_url: str,
) -> None:
    engine = create_database_engine(database_url)
    await migrate(engine)
    lines = 16 * MIB // len(_jsonl_line(0))

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(lines):
            yield _jsonl_line(i)

    gaps: list[float] = []

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - before)

    try:
        store = FileStore(engine)
        info = await store.upload("acme", "in.jsonl", "batch", pieces())
        batches = Batches(store, BatchStore(engine), None,  # type: ignore[arg-type]
                          BatchSettings(max_requests=lines), "gw", 1 << 20, 64)
        ticker = asyncio.create_task(tick())
        gc.disable()  # a full collection of this test process's heap is no parse's doing
        view = await batches.create(NewBatch("acme", None, "/v1/completions", info.id))
        ticker.cancel()
    finally:
        gc.enable()
        await engine.dispose()
    assert view.counts == {"pending": lines}
    assert max(gaps) < 0.25, max(gaps)  # parsing 16 MiB on the loop stalls it for a second
