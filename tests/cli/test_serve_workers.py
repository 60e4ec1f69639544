"""``llm-gateway serve --workers N``: N processes on one port in remote mode, one set of
books; refused, with the reason, where it cannot be."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.gateway_overhead import servers
from bench.targets import REPO
from cli.workers import refuse_workers
from gateway.metering.tables import LedgerRow
from gateway.settings import load_settings
from tests.gateway.conftest import create_postgres_database, drop_postgres_database, postgres_url


def test_workers_when_a_model_runs_an_embedded_engine_then_refused_naming_it() -> None:
    cpu = load_settings(profile="cpu")
    problem = refuse_workers(cpu, 2)
    assert problem is not None and "embedded engine" in problem
    assert refuse_workers(cpu, 1) is None


def test_workers_when_remote_but_books_not_shared_then_refused_naming_the_setting() -> None:
    cpu = load_settings(profile="cpu")
    remote = cpu.model_copy(update={"models": {
        name: dataclasses.replace(model, replicas=["http://replica:8000"])
        for name, model in cpu.models.items()}})
    assert remote.served_models() and all(remote.models[n].is_remote
                                          for n in remote.served_models())
    problem = refuse_workers(remote, 2)
    assert problem is not None and "metering.database_url" in problem
    metering = remote.metering.model_copy(update={"database_url": "postgresql+asyncpg://x/y"})
    no_redis = remote.model_copy(update={"metering": metering})
    assert "metering.redis_url" in (refuse_workers(no_redis, 2) or "")


async def _ledger(url: str) -> list[tuple[str, str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(LedgerRow.instance_id, LedgerRow.status))
            return [(str(i), str(s)) for i, s in rows.all()]
    finally:
        await engine.dispose()


async def _streams(gateway: servers.Gateway, count: int) -> list[int]:
    body = {"model": gateway.model, "stream": True, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]}

    async def one() -> int:  # a connection of its own: any worker may take it
        async with httpx.AsyncClient(base_url=gateway.server.url, timeout=60) as client:
            response = await client.post("/v1/chat/completions", json=body,
                                         headers={"authorization": f"Bearer {gateway.key}"})
            return response.status_code

    return list(await asyncio.gather(*(one() for _ in range(count))))


@pytest.mark.slow
def test_serve_when_two_workers_in_remote_mode_then_both_serve_one_set_of_books(
    tmp_path: Path,
) -> None:
    name = asyncio.run(create_postgres_database())
    replica = servers.start_stub("vllm_replica", servers.REPLICA_KEY, None, tmp_path)
    upstream = servers.start_stub("openai_upstream", servers.UPSTREAM_KEY, None, tmp_path)
    try:
        gateway = servers.start_gateway(REPO, replica, upstream, postgres_url(name), None,
                                        tmp_path, workers=2)
        try:
            assert asyncio.run(_streams(gateway, 48)) == [200] * 48
        finally:
            gateway.server.stop()
        assert gateway.server.process.returncode == 0  # both drained on the forwarded signal
        rows = asyncio.run(_ledger(postgres_url(name)))
        assert len(rows) == 48 and {status for _, status in rows} <= {"ok", "length"}
        assert {instance for instance, _ in rows} == {"bench-overhead-0", "bench-overhead-1"}
    finally:
        replica.stop()
        upstream.stop()
        asyncio.run(drop_postgres_database(name))
