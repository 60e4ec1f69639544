"""A relayed stream gets the engine streams' deadline (``limits.stream_deadline_s``): past
it the client gets an in-band error and ``[DONE]``, the upstream request is cancelled (its
connection closed) and the row is settled with what was relayed (a loopback upstream that
never sends usage before its end; SQLite and PostgreSQL ledgers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.fake import FakeEngine
from gateway.metering.pricing import to_pico
from tests.conftest import MODEL
from tests.gateway.metered import bearer, create_key, metered_client
from tests.gateway.upstream.conftest import cost, upstream_settings
from tests.gateway.upstream.openai_upstream import Behaviour, running_upstream, words
from tests.gateway.upstream.test_relay import (
    CHAT,
    O200K,
    chat_estimate,
    settled_row,
    sse_payloads,
)

LONG_STREAM = {**CHAT, "max_tokens": 2_000, "stream": True}


@contextlib.asynccontextmanager
async def relayed_with_deadline(database_url: str, behaviour: Behaviour, deadline_s: float
                                ) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, Any]]]:
    async with running_upstream(behaviour) as url:
        settings = upstream_settings(database_url, url)
        limits = settings.limits.model_copy(update={"stream_deadline_s": deadline_s})
        async with metered_client(FakeEngine(MODEL), settings.model_copy(
                update={"limits": limits})) as (client, state):
            yield client, state, await create_key(client, "acme")


def _relayed_text(text: str) -> tuple[str, list[Any]]:
    """The content the client got, and the error events."""
    payloads = sse_payloads(text)
    content = "".join(p["choices"][0]["delta"].get("content") or ""
                      for p in payloads if p.get("choices"))
    return content, [p for p in payloads if "error" in p]


async def test_stream_when_past_the_deadline_then_cut_upstream_cancelled_and_relayed_billed(
    database_url: str,
) -> None:
    behaviour = Behaviour(token_delay_s=0.05)  # 2,000 words would take 100 s
    async with relayed_with_deadline(database_url, behaviour, 1.0) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=LONG_STREAM,
                                     headers=bearer(key))
        assert response.status_code == 200
        await asyncio.wait_for(behaviour.disconnected.wait(), timeout=10)  # upstream stopped
        row = await settled_row(state, response.headers["x-request-id"])
    text, errors = _relayed_text(response.text)
    assert response.text.rstrip().endswith("data: [DONE]")
    assert [e["error"]["type"] for e in errors] == ["service_unavailable"]
    assert "longer than 1 s" in errors[0]["error"]["message"]
    relayed = O200K.count(text)
    assert 0 < len(text) < len("".join(words(2_000)))  # cut short
    assert (row.status, row.estimated) == ("aborted", True)
    assert (row.prompt_tokens, row.completion_tokens) == (chat_estimate(), relayed)
    assert row.cost_pico == to_pico(cost(chat_estimate(), relayed))


async def test_stream_when_upstream_goes_silent_then_cut_at_the_deadline_not_at_its_next_chunk(
    database_url: str,
) -> None:
    """The wait for the next chunk is bounded too: an upstream silent past the deadline is cut
    while silent (a check made only when a chunk arrives would relay its late first word)."""
    behaviour = Behaviour(token_delay_s=30.0)
    async with relayed_with_deadline(database_url, behaviour, 0.5) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=LONG_STREAM,
                                     headers=bearer(key))
        await asyncio.wait_for(behaviour.disconnected.wait(), timeout=10)
        row = await settled_row(state, response.headers["x-request-id"])
    text, errors = _relayed_text(response.text)
    assert response.status_code == 200 and text == "" and len(errors) == 1
    assert (row.status, row.completion_tokens, row.cost_pico) == ("aborted", 0, 0)
