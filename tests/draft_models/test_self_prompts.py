"""Prompts the target writes itself: the template prefix, the rules, and the real model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.speculation import CHAT
from draft_models.pipeline import BuildPlan, _prompts, self_held_out
from draft_models.prompts import Prompt, held_out_words
from draft_models.self_prompts import (
    Completer,
    SelfPromptPlan,
    sample_prompts,
    select,
    user_turn_prefix,
)
from gateway.settings import load_settings
from tests.conftest import MODEL, LiveGateway


@pytest.fixture(scope="module")
def target_dir() -> Path:
    return load_settings(profile="test").model_path(MODEL)


def test_user_turn_prefix_when_template_has_system_prompt_then_ends_at_user_words(
    target_dir: Path,
) -> None:
    prefix = user_turn_prefix(target_dir)
    assert prefix.startswith("<|im_start|>system\n")
    assert prefix.endswith("<|im_start|>user\n")


def test_select_when_turns_repeat_or_break_rules_then_only_new_usable_ones_kept(
    target_dir: Path,
) -> None:
    plan = SelfPromptPlan(target_dir, count=10, exclude=("pancake",), max_words=12)
    seen: set[str] = set()
    turns = ["How do I bake sourdough bread at home?", "  how do I bake SOURDOUGH bread at home? ",
             "Hi", "Give me a recipe for Pancakes.", "word " * 13,
             "Why is the sky blue during the day?"]
    kept = select(turns, plan, seen)
    assert [p.text for p in kept] == ["How do I bake sourdough bread at home?",
                                      "Why is the sky blue during the day?"]
    assert {p.source for p in kept} == {"self"}
    assert select(["Why is the sky blue during the day?"], plan, seen) == []


def test_held_out_words_when_checked_against_bench_chats_then_each_chat_is_covered() -> None:
    words = held_out_words()
    for chat in CHAT:
        assert any(w.startswith(x) for w in chat.lower().replace("?", " ").split()
                   for x in words), chat


def test_sample_prompts_when_a_round_falls_short_then_more_rounds_fill_the_count(
    target_dir: Path,
) -> None:
    calls: list[list[int]] = []

    def complete(prefix: str, seeds: list[int]) -> list[tuple[str, bool]]:
        calls.append(seeds)  # first round: seed 1 never ends its turn, seeds >= 3 repeat
        return [(f"Tell me about item {3 if 3 <= s < 1000 else s} please", s != 1) for s in seeds]

    plan = SelfPromptPlan(target_dir, count=5)
    prompts = sample_prompts(plan, complete)
    assert [p.text for p in prompts][:3] == [f"Tell me about item {i} please" for i in (0, 2, 3)]
    assert len(prompts) == 5 and len({p.text for p in prompts}) == 5
    assert calls[0] == list(range(10)) and len(calls[1]) == 4


def _gateway_completer(gateway: LiveGateway, plan: SelfPromptPlan) -> Completer:
    """The same sampling through the session gateway's /v1/completions (real vLLM)."""

    def complete(prefix: str, seeds: list[int]) -> list[tuple[str, bool]]:
        out = []
        for seed in seeds:
            response = httpx.post(f"{gateway.v1}/completions", headers=gateway.admin_headers(),
                                  timeout=120, json={
                                      "model": gateway.model, "prompt": prefix, "seed": seed,
                                      "temperature": plan.temperature, "top_p": plan.top_p,
                                      "max_tokens": plan.max_tokens})
            response.raise_for_status()
            choice = response.json()["choices"][0]
            out.append((choice["text"], choice["finish_reason"] == "stop"))
        return out

    return complete


@pytest.mark.engine
def test_sample_prompts_when_target_samples_its_user_turn_then_prompts_are_varied_requests(
    live_gateway: LiveGateway, target_dir: Path,
) -> None:
    plan = SelfPromptPlan(target_dir, count=4, seed=3, exclude=held_out_words())
    first = sample_prompts(plan, _gateway_completer(live_gateway, plan))
    again = sample_prompts(plan, _gateway_completer(live_gateway, plan))
    assert [p.text for p in first] == [p.text for p in again]  # seeded: reproducible
    assert len({p.text for p in first}) == 4
    for prompt in first:
        assert "<|im_" not in prompt.text and 3 <= len(prompt.text.split()) <= 60


def test_build_prompts_when_target_wrote_some_then_the_extra_ones_are_held_out(
    tmp_path: Path,
) -> None:
    plan = BuildPlan("t", tmp_path, tmp_path, tmp_path, prompts=10, held_out=4, self_prompts=3)
    written = [Prompt(f"self {i}", source="self") for i in range(3 + self_held_out(plan))]
    train, held = _prompts(plan, written)
    assert [p.text for p in train[:3]] == ["self 0", "self 1", "self 2"]
    assert [p.source for p in train[3:]] == ["bundled"] * 10
    assert [p.text for p in held if p.source == "self"] == ["self 3", "self 4"]
    assert [p.source for p in held] == ["self", "bundled", "self", "bundled", "bundled",
                                        "bundled"]
