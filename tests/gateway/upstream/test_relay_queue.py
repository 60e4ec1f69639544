"""An upstream that declares ``seats`` is queued like our engines: past them, requests wait
in the fair queue (a real loopback upstream, metered on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import httpx

from engine.fake import FakeEngine
from tests.conftest import MODEL
from tests.gateway.metered import bearer, create_key, served
from tests.gateway.upstream.conftest import OVERFLOW, upstream_settings
from tests.gateway.upstream.openai_upstream import Behaviour, running_upstream

CHAT = {"model": OVERFLOW, "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 40, "stream": True}


async def test_relay_when_its_seats_are_taken_then_the_next_waits_and_runs_after(
    database_url: str,
) -> None:
    behaviour = Behaviour(send_usage=True, token_delay_s=0.02)
    async with running_upstream(behaviour) as url, served(
            FakeEngine(MODEL), upstream_settings(database_url, url, seats=1)) as server:
        queue = server.state.pipeline.queues.get(OVERFLOW)
        assert queue is not None and queue.capacity == 1
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            first_key, second_key = (await create_key(client, "acme"),
                                     await create_key(client, "globex"))
            async with client.stream("POST", "/v1/chat/completions", json=CHAT,
                                     headers=bearer(first_key)) as first:
                lines = first.aiter_lines()
                while not (await anext(lines)).startswith("data: {"):
                    pass
                second = asyncio.create_task(client.post(
                    "/v1/chat/completions", json={**CHAT, "stream": False},
                    headers=bearer(second_key)))
                for _ in range(100):
                    if queue.depth:
                        break
                    await asyncio.sleep(0.02)
                assert (queue.in_use, queue.depth, len(behaviour.seen)) == (1, 1, 1)
                async for _ in lines:  # the first stream runs to its end
                    pass
            answered = await asyncio.wait_for(second, 30)
        assert answered.status_code == 200, answered.text
        assert len(behaviour.seen) == 2 and queue.in_use == 0
