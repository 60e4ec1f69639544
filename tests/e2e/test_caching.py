"""Caching on the real engine: the exact response cache, and vLLM's prefix cache salted
per tenant so one tenant's cached blocks never speed up (or reveal) another's prompt."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveGateway
from tests.e2e.test_openai_sdk import engine_delta

pytestmark = [pytest.mark.engine]


def _key(gateway: LiveGateway, tenant: str, **policy: Any) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers=gateway.admin_headers(),
                          json={"tenant": tenant, **policy})
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


def test_response_cache_when_key_opts_in_then_repeat_answered_without_the_engine(
    live_gateway: LiveGateway,
) -> None:
    client = openai.OpenAI(base_url=live_gateway.v1, max_retries=0,
                           api_key=_key(live_gateway, f"cache-{uuid.uuid4().hex[:8]}",
                                        response_cache=True))
    question = f"In one sentence, what is a comet? ({uuid.uuid4().hex[:6]})"

    def ask(stream: bool = False) -> Any:
        return client.chat.completions.with_raw_response.create(
            model=live_gateway.model, messages=[{"role": "user", "content": question}],
            max_tokens=24, temperature=0, stream=stream)

    miss, _, miss_generated = engine_delta(live_gateway, ask)
    hit, hit_prompt, hit_generated = engine_delta(live_gateway, ask)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit")
    assert miss_generated > 0 and (hit_prompt, hit_generated) == (0, 0)
    first, second = miss.parse(), hit.parse()
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage is not None and first.usage is not None
    assert second.usage.completion_tokens == first.usage.completion_tokens
    assert second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == second.usage.prompt_tokens
    streamed, _, streamed_generated = engine_delta(live_gateway, lambda: ask(stream=True))
    assert streamed.headers["x-cache"] == "hit" and streamed_generated == 0
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed.parse()
                   if chunk.choices)
    assert text == first.choices[0].message.content


def _cached_tokens(gateway: LiveGateway, key: str, prompt: str) -> int:
    response = httpx.post(f"{gateway.v1}/chat/completions", timeout=120,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": gateway.model, "max_tokens": 2, "temperature": 0.7,
                                "messages": [{"role": "user", "content": prompt}]})
    response.raise_for_status()
    cached: int = response.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached


def test_prefix_cache_when_two_tenants_send_one_prompt_then_blocks_are_not_shared(
    live_gateway: LiveGateway,
) -> None:
    run = uuid.uuid4().hex
    acme, globex = _key(live_gateway, f"acme-{run[:8]}"), _key(live_gateway, f"globex-{run[:8]}")
    prompt = f"{run}: " + " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog."
                                   for i in range(40))  # several KV blocks long
    assert _cached_tokens(live_gateway, acme, prompt) == 0
    assert _cached_tokens(live_gateway, acme, prompt) > 0  # same tenant: prefix reused
    assert _cached_tokens(live_gateway, globex, prompt) == 0  # other tenant: nothing shared
    assert _cached_tokens(live_gateway, globex, prompt) > 0
