"""The official OpenAI SDK against the real gateway and vLLM engine (SmolLM2, CPU)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import LiveGateway

pytestmark = [pytest.mark.engine]
FRANCE: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]
STORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a very long story about a dragon and a knight."}
]


def sync_client(gateway: LiveGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=gateway.admin_key, max_retries=0)


def async_client(gateway: LiveGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key=gateway.admin_key, max_retries=0)


def engine_delta(gateway: LiveGateway, action: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``action``; return its result and the engine's prompt/generation token deltas."""
    before = gateway.engine_stats()
    result = action()
    after = wait_idle(gateway)
    return (
        result,
        after["prompt_tokens_total"] - before["prompt_tokens_total"],
        after["generation_tokens_total"] - before["generation_tokens_total"],
    )


def wait_idle(gateway: LiveGateway, timeout_s: float = 30) -> dict[str, Any]:
    """The engine's stats once nothing runs; fails if it is still busy after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = gateway.engine_stats()
        if stats["running"] == 0 and stats["unfinished_requests"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy after {timeout_s} s: {stats}")
        time.sleep(0.2)


def test_chat_when_asked_capital_of_france_then_answer_says_paris(
    live_gateway: LiveGateway,
) -> None:
    completion = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, messages=FRANCE, temperature=0, max_tokens=30
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"


def test_usage_when_request_finishes_then_equals_engine_token_counts(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    completion, prompt_delta, generation_delta = engine_delta(
        live_gateway,
        lambda: client.chat.completions.create(
            model=live_gateway.model, messages=FRANCE, temperature=0, max_tokens=40
        ),
    )
    assert completion.usage.prompt_tokens == prompt_delta
    assert completion.usage.completion_tokens == generation_delta
    assert completion.usage.total_tokens == prompt_delta + generation_delta


async def test_stream_when_greedy_then_text_equals_non_streamed_text(
    live_gateway: LiveGateway,
) -> None:
    client = async_client(live_gateway)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Name three colors and describe each briefly."}
    ]
    whole = await client.chat.completions.create(
        model=live_gateway.model, messages=messages, temperature=0, max_tokens=60
    )
    stream = await client.chat.completions.create(
        model=live_gateway.model,
        messages=messages,
        temperature=0,
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(parts) == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_when_max_tokens_five_then_length_and_five_tokens(live_gateway: LiveGateway) -> None:
    completion = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, messages=STORY, temperature=0, max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_chat_when_stop_strings_given_then_they_never_appear(live_gateway: LiveGateway) -> None:
    client = sync_client(live_gateway)
    whole = client.chat.completions.create(
        model=live_gateway.model, messages=FRANCE, temperature=0, max_tokens=30, stop=["Paris"]
    )
    assert "Paris" not in (whole.choices[0].message.content or "")
    assert whole.choices[0].finish_reason == "stop"
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=live_gateway.model,
            messages=FRANCE,
            temperature=0,
            max_tokens=30,
            stop=["Paris", " is"],
            stream=True,
        )
        if chunk.choices
    )
    assert "Paris" not in streamed and " is" not in streamed


def test_chat_when_same_seed_then_same_text_at_temperature_point_eight(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)

    def sample(seed: int) -> str:
        completion = client.chat.completions.create(
            model=live_gateway.model, messages=STORY, temperature=0.8, seed=seed, max_tokens=40
        )
        return completion.choices[0].message.content or ""

    first = sample(1234)
    assert sample(1234) == first
    assert len(first) > 0


async def test_stream_when_sixteen_concurrent_then_all_complete_with_exact_usage(
    live_gateway: LiveGateway,
) -> None:
    client = async_client(live_gateway)

    async def one(i: int) -> Any:
        stream = await client.chat.completions.create(
            model=live_gateway.model,
            stream=True,
            temperature=0.7,
            seed=i,
            max_tokens=48,
            messages=[{"role": "user", "content": f"Tell me fact number {i} about the sea."}],
            stream_options={"include_usage": True},
        )
        usage, finished = None, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finished = chunk.choices[0].finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        return usage, finished

    before = live_gateway.engine_stats()
    results = await asyncio.gather(*(one(i) for i in range(16)))
    after = wait_idle(live_gateway)
    assert all(usage is not None and finished in ("stop", "length") for usage, finished in results)
    assert sum(u.completion_tokens for u, _ in results) == (
        after["generation_tokens_total"] - before["generation_tokens_total"]
    )
    assert sum(u.prompt_tokens for u, _ in results) == (
        after["prompt_tokens_total"] - before["prompt_tokens_total"]
    )


def test_chat_when_n_two_then_two_choices_streamed_and_not(live_gateway: LiveGateway) -> None:
    client = sync_client(live_gateway)
    whole = client.chat.completions.create(
        model=live_gateway.model, messages=FRANCE, temperature=0.9, n=2, max_tokens=20
    )
    assert sorted(c.index for c in whole.choices) == [0, 1]
    indexes = {
        choice.index
        for chunk in client.chat.completions.create(
            model=live_gateway.model,
            messages=FRANCE,
            temperature=0.9,
            n=2,
            max_tokens=20,
            stream=True,
        )
        for choice in chunk.choices
    }
    assert indexes == {0, 1}


def test_completions_when_prompt_text_then_sdk_returns_text_and_logprobs(
    live_gateway: LiveGateway,
) -> None:
    completion = sync_client(live_gateway).completions.create(
        model=live_gateway.model,
        prompt="The capital of France is",
        max_tokens=8,
        temperature=0,
        logprobs=2,
    )
    choice = completion.choices[0]
    assert choice.text
    assert choice.logprobs is not None and len(choice.logprobs.tokens or []) == 8
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_chat_when_logprobs_requested_then_sdk_parses_them(live_gateway: LiveGateway) -> None:
    completion = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model,
        messages=FRANCE,
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    content = logprobs.content
    assert content is not None and len(content) == 6
    assert all(len(item.top_logprobs) == 3 for item in content)
    assert all(item.logprob <= 0 for item in content)


def test_chat_when_prompt_too_long_then_sdk_raises_bad_request(live_gateway: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sync_client(live_gateway).chat.completions.create(
            model=live_gateway.model,
            max_tokens=10,
            messages=[{"role": "user", "content": "word " * 5000}],
        )
    assert caught.value.code == "context_length_exceeded"


def test_stream_when_client_disconnects_then_engine_aborts(live_gateway: LiveGateway) -> None:
    before = live_gateway.engine_stats()
    body = {
        "model": live_gateway.model,
        "messages": STORY,
        "max_tokens": 1500,
        "temperature": 0.8,
        "seed": 7,
        "stream": True,
    }
    received = 0
    with httpx.stream(
        "POST",
        f"{live_gateway.v1}/chat/completions",
        json=body,
        headers=live_gateway.admin_headers(),
        timeout=60,
    ) as response:
        for line in response.iter_lines():
            received += line.startswith("data: ")
            if received >= 5:
                break
    after = wait_idle(live_gateway, timeout_s=10)  # aborted: the engine is idle again
    assert after["running"] == 0 and after["unfinished_requests"] == 0
    generated = after["generation_tokens_total"] - before["generation_tokens_total"]
    assert 3 <= generated < 1500


def test_health_and_ready_when_engine_loaded_then_both_ok(live_gateway: LiveGateway) -> None:
    assert httpx.get(f"{live_gateway.base_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{live_gateway.base_url}/ready")
    assert ready.status_code == 200 and ready.json()["models"][live_gateway.model] is True


def test_start_when_the_embedder_still_loads_then_the_chat_model_is_already_ready(
    live_gateway: LiveGateway,
) -> None:
    # The session gateway serves both; its start was watched through /ready (tests/conftest.py)
    chat_first = [s for s in live_gateway.startup
                  if s.get(live_gateway.model) and not all(s.values())]
    assert chat_first, live_gateway.startup  # answered for chat while the embedder loaded
    assert all(live_gateway.startup[-1].values())


def test_models_when_listed_with_sdk_then_default_model_present(live_gateway: LiveGateway) -> None:
    ids = [model.id for model in sync_client(live_gateway).models.list()]
    assert live_gateway.model in ids
