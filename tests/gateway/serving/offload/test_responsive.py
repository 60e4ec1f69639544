"""The event loop stays responsive while planning is busy: ``/health`` is answered while
a request's planning is held inside the pool (shown by events, not timings)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import httpx
import pytest

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import ADMIN_KEY, MODEL, make_settings
from tests.gateway.serving.offload.doubles import Event, GatedRenderer

LONG_CHAT = {"model": MODEL, "max_tokens": 4,
             "messages": [{"role": "user", "content": "word " * 400}]}  # past inline_max_chars


def events(executor: str) -> tuple[Event, Event]:
    if executor == "thread":
        return threading.Event(), threading.Event()
    spawn = multiprocessing.get_context("spawn")  # shared with the worker process
    return spawn.Event(), spawn.Event()


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_health_when_a_planning_job_is_held_in_the_pool_then_still_answered(
    executor: str,
) -> None:
    entered, release = events(executor)
    registry = ModelRegistry([ServedModel(MODEL, FakeEngine(MODEL),
                                          GatedRenderer(entered, release))])
    settings = make_settings()
    settings = settings.model_copy(update={"planning": settings.planning.model_copy(
        update={"executor": executor, "timeout_s": 120})})
    state = build_state(settings, registry)
    app = create_app(state, manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway",
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
        try:
            chat = asyncio.create_task(client.post("/v1/chat/completions", json=LONG_CHAT))
            assert await asyncio.to_thread(entered.wait, 120)  # rendering, in the pool
            health = await client.get("/health")
            assert health.status_code == 200
            assert not chat.done() and state.planning.slots.in_use == 1
            release.set()
            response = await chat
            assert response.status_code == 200, response.text
            assert state.planning.counts == {"pooled": 1}
        finally:
            release.set()
            await state.planning.close()
