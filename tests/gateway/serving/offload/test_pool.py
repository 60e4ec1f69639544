"""Where a request is planned: light ones on the loop, the rest in a bounded pool whose
jobs have a time limit (threads here; worker processes in test_processes.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from engine.fake import CharRenderer
from gateway.errors import InvalidRequestError, RateLimitError
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.serving.offload.pool import PlanningPool
from gateway.serving.planning.chat import ModelView, build_chat_plan
from gateway.serving.planning.job import PlanJob, weight
from gateway.settings import LimitSettings, PlanningSettings
from tests.gateway.serving.offload.doubles import GatedRenderer, until

LIMITS = LimitSettings()
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
TOOLS: dict[str, Any] = {"tools": [WEATHER], "tool_choice": "none"}  # shown, never forced


def chat(text: str = "hi", **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}], **fields})


def job(body: ChatCompletionRequest | CompletionRequest, renderer: str = "m") -> PlanJob:
    return PlanJob(body, renderer, 4096, LIMITS)


def pool(renderers: dict[str, Any] | None = None, **settings: Any) -> PlanningPool:
    return PlanningPool(renderers or {"m": CharRenderer()},
                        PlanningSettings(executor="thread", **settings))


def test_weight_when_schema_or_tools_then_heavy_else_characters_and_messages() -> None:
    assert weight(chat("hello")) == 64 + 5
    assert weight(chat(tools=[WEATHER])) is None
    assert weight(chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}})) is None
    assert weight(chat(response_format={"type": "json_object"})) == 64 + 2
    assert weight(CompletionRequest(model="m", prompt=["abc", "de"])) == 5
    assert weight(CompletionRequest(model="m", prompt=[[1, 2, 3]],
                                    logit_bias={"1": 1, "2": 1})) == 5


async def test_light_request_when_planned_then_on_the_loop_and_nothing_pooled() -> None:
    planner = pool()
    plan = await planner.plan(job(chat("hello")), "acme")
    expected = build_chat_plan(chat("hello"), ModelView(CharRenderer(), 4096), LIMITS)
    assert plan == expected
    assert planner.counts == {"inline": 1}


async def test_heavy_request_when_planned_then_in_the_pool_with_the_same_plan() -> None:
    planner = pool()
    body = chat("x" * 3000, **TOOLS)
    plan = await planner.plan(job(body), "acme")
    assert plan == build_chat_plan(body, ModelView(CharRenderer(), 4096), LIMITS)
    assert planner.counts == {"pooled": 1} and planner.slots.in_use == 0


async def test_pooled_request_when_its_schema_is_invalid_then_400_naming_the_field() -> None:
    body = chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "no-such-type"}}})
    with pytest.raises(InvalidRequestError) as refused:
        await pool().plan(job(body), "acme")
    assert refused.value.param == "response_format.json_schema.schema"


async def test_thread_job_when_over_its_time_then_400_naming_the_field_and_slot_held() -> None:
    entered, release = threading.Event(), threading.Event()
    planner = pool({"m": CharRenderer(), "gated": GatedRenderer(entered, release)},
                   workers=2, per_tenant=1, timeout_s=0.2, wait_timeout_s=0.2)
    with pytest.raises(InvalidRequestError) as refused:
        await planner.plan(job(chat(**TOOLS), "gated"), "acme")
    error = refused.value
    assert (error.status_code, error.code, error.param) == (400, "request_too_costly",
                                                            "messages")
    assert "0.2 wall seconds while preparing messages" in error.message
    # A thread cannot be stopped: until it ends, it holds its slot and its tenant's share.
    assert planner.slots.in_use == 1
    with pytest.raises(RateLimitError):
        await planner.plan(job(chat(**TOOLS)), "acme")
    await planner.plan(job(chat(**TOOLS)), "other")  # the other slot serves others
    release.set()
    await until(lambda: planner.slots.in_use == 0)  # the gated thread ends: slot back
    await planner.plan(job(chat(**TOOLS)), "acme")
    await planner.close()
