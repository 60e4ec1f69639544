"""Batch inputs and polling, shared by the fast and the real-engine batch tests."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import openai

TERMINAL = ("completed", "failed", "cancelled", "expired")


def input_file(model: str, count: int, max_tokens: int = 6,
               endpoint: str = "/v1/chat/completions") -> io.BytesIO:
    lines = []
    for i in range(count):
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0}
        if endpoint == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": f"Say the number {i}."}]
        else:
            body["prompt"] = f"Number {i}:"
        lines.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": endpoint,
                                 "body": body}))
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    data.name = "input.jsonl"
    return data


async def wait_for(client: openai.AsyncOpenAI, batch_id: str, statuses: tuple[str, ...],
                   timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}: {batch}"
        await asyncio.sleep(0.2)


async def output_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines() if line.strip()]


async def wait_completed(client: openai.AsyncOpenAI, batch_id: str, at_least: int,
                         timeout_s: float = 120) -> None:
    """Until at least ``at_least`` lines of the batch are answered."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = (await client.batches.retrieve(batch_id)).request_counts
        if counts is not None and counts.completed >= at_least:
            return
        assert time.monotonic() < deadline, f"fewer than {at_least} lines answered"
        await asyncio.sleep(0.05)
