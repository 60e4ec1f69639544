"""Speculation on the real engine: greedy output identical to speculation off, and metered.

This needs a second engine configuration (a proposer loaded next to the target), so the
module starts a speculative gateway per proposer, one after the other: the shipped small
Llama draft (profile ``test-speculation``, 3 tokens), the shipped EAGLE head (profile
``test-eagle``, 2 tokens) and the shipped EAGLE-3 head with its own vocabulary (profile
``test-eagle3``, 2 tokens), and compares each against the session's plain ``live_gateway``.
All run float32, where multi-token verification reproduces one-token decoding exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.vllm_plugin import SKIP_LOG
from tests.conftest import CHAT_ONLY, LiveGateway, start_gateway, stop_gateway

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROMPTS = (
    "What are the main causes of earthquakes?",
    "Give me a simple recipe for pancakes.",
    "Write a short poem about autumn leaves.",
    "Explain what a neural network is to a beginner.",
    "Repeat exactly: the quick brown fox jumps over the lazy dog, twice.",
    "Why do cats purr?",
)


# profile: drafted tokens per step
PROFILES = {"test-speculation": 3, "test-eagle": 2, "test-eagle3": 2}
# profiles whose steps without drafts skip the drafter pass (engine/vllm_plugin.py)
SKIPS_IDLE_DRAFTS = {"test-eagle", "test-eagle3"}


@pytest.fixture(scope="module", params=list(PROFILES))
def speculative_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    tmp: Path = tmp_path_factory.mktemp("speculative-gateway")
    # The env entry only names the profile for the tests (``PROFILES[...]``).
    gateway = start_gateway(tmp / "gateway.log", {"LLMGW_TEST_PROFILE": request.param, **CHAT_ONLY},
                            profile=request.param)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


async def _complete(gateway: LiveGateway, prompt: str) -> list[int]:
    body = {"model": gateway.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 48, "temperature": 0, "logprobs": True}
    async with httpx.AsyncClient(timeout=300) as client:
        response = await client.post(f"{gateway.v1}/chat/completions", json=body,
                                     headers=gateway.admin_headers())
    response.raise_for_status()
    content = response.json()["choices"][0]["logprobs"]["content"]
    return [entry["token"] for entry in content]


async def test_greedy_output_is_identical_with_and_without_a_draft(
    live_gateway: LiveGateway, speculative_gateway: LiveGateway
) -> None:
    for prompt in PROMPTS:  # one at a time: batch 1, drafting on every step
        plain = await _complete(live_gateway, prompt)
        assert await _complete(speculative_gateway, prompt) == plain, prompt


async def test_greedy_output_is_identical_when_load_turns_drafting_off(
    live_gateway: LiveGateway, speculative_gateway: LiveGateway
) -> None:
    # 12 at once: above max_batch_size (4) the schedule drafts nothing, below it drafts.
    prompts = list(PROMPTS) * 2
    plain = await asyncio.gather(*(_complete(live_gateway, p) for p in prompts))
    spec = await asyncio.gather(*(_complete(speculative_gateway, p) for p in prompts))
    assert spec == plain
    # The engine process logs the first skipped pass: the plugin ran inside vLLM.
    skipped = SKIP_LOG in speculative_gateway.log_path.read_text(errors="replace")
    assert skipped == (speculative_gateway.env["LLMGW_TEST_PROFILE"] in SKIPS_IDLE_DRAFTS)


def test_engine_meters_acceptance_by_position_and_flags_a_stale_draft(
    speculative_gateway: LiveGateway,
) -> None:
    for prompt in PROMPTS:
        asyncio.run(_complete(speculative_gateway, prompt))
    stats = speculative_gateway.engine_stats()
    drafted, accepted = stats["spec_drafted_total"], stats["spec_accepted_total"]
    per_position = stats["spec_accepted_per_position"]
    assert drafted > 0
    assert 0 < accepted <= drafted
    k = PROFILES[speculative_gateway.env["LLMGW_TEST_PROFILE"]]
    assert len(per_position) == k
    assert sum(per_position) == accepted
    assert list(per_position) == sorted(per_position, reverse=True)
    assert stats["spec_drafts_total"] * k >= drafted
    assert stats["spec_window_acceptance"] == pytest.approx(accepted / drafted)
    rates = stats["spec_window_rate_by_position"]
    assert rates[0] == pytest.approx(per_position[0] / stats["spec_drafts_total"])
    assert stats["spec_draft_stale"] is True  # the profile's floor (0.99) is out of reach
