"""The Batch API with the official SDK on the real engine: a 50-line batch, and a cancel."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.conftest import LiveGateway
from tests.e2e.test_openai_sdk import wait_idle
from tests.gateway.batches.helpers import (
    TERMINAL,
    input_file,
    output_lines,
    wait_completed,
    wait_for,
)

pytestmark = [pytest.mark.engine]


def _client(gateway: LiveGateway) -> openai.AsyncOpenAI:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers=gateway.admin_headers(),
                          json={"tenant": f"batch-{uuid.uuid4().hex[:8]}"})
    response.raise_for_status()
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key=response.json()["key"],
                              max_retries=0)


async def test_batch_when_50_lines_then_all_answered_and_usage_matches_the_engine(
    live_gateway: LiveGateway,
) -> None:
    client = _client(live_gateway)
    before = wait_idle(live_gateway)
    upload = await client.files.create(file=input_file(live_gateway.model, 50, max_tokens=8),
                                       purpose="batch")
    batch = await client.batches.create(input_file_id=upload.id,
                                        endpoint="/v1/chat/completions", completion_window="24h")
    done = await wait_for(client, batch.id, TERMINAL, timeout_s=600)
    after = wait_idle(live_gateway)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (50, 0)
    lines = await output_lines(client, done.output_file_id)
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(50)]
    usage = [line["response"]["body"]["usage"] for line in lines]
    assert all(line["response"]["body"]["choices"][0]["message"]["content"] for line in lines)
    assert sum(u["completion_tokens"] for u in usage) == (
        after["generation_tokens_total"] - before["generation_tokens_total"])
    assert sum(u["prompt_tokens"] for u in usage) == (
        after["prompt_tokens_total"] - before["prompt_tokens_total"])


async def test_batch_when_cancelled_mid_way_then_stops_with_partial_output(
    live_gateway: LiveGateway,
) -> None:
    client = _client(live_gateway)
    upload = await client.files.create(file=input_file(live_gateway.model, 60, max_tokens=48),
                                       purpose="batch")
    batch = await client.batches.create(input_file_id=upload.id,
                                        endpoint="/v1/chat/completions", completion_window="24h")
    await wait_completed(client, batch.id, 2)
    await client.batches.cancel(batch.id)
    done = await wait_for(client, batch.id, TERMINAL, timeout_s=300)
    assert done.status == "cancelled" and done.request_counts is not None
    lines = await output_lines(client, done.output_file_id)
    assert 2 <= len(lines) == done.request_counts.completed < 60
    wait_idle(live_gateway)
