"""Planning in worker processes: the same plans and errors as on the loop, a CPU time
limit that stops a job where it is (the worker lives on), a worker that stops answering
killed and replaced, and workers that yield the CPU."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.fake import CharRenderer
from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest
from gateway.serving.offload.pool import PlanningPool
from gateway.serving.offload.processes import ProcessRunner
from gateway.serving.planning.chat import ModelView, build_chat_plan
from gateway.serving.planning.job import PlanJob
from gateway.settings import LimitSettings, PlanningSettings
from tests.gateway.serving.offload.doubles import SleepingRenderer, SpinningRenderer

LIMITS = LimitSettings()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "weather?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema":
                                                                   SCHEMA}}, **fields})


@pytest.fixture
async def planner() -> AsyncIterator[PlanningPool]:
    renderers = {"m": CharRenderer(), "spin": SpinningRenderer(), "sleep": SleepingRenderer()}
    pool = PlanningPool(renderers, PlanningSettings(executor="process", workers=1,
                                                    timeout_s=0.5, niceness=7))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def worker_pid(pool: PlanningPool) -> int | None:
    assert isinstance(pool.runner, ProcessRunner)
    return pool.runner.workers[0].pid


async def test_process_plan_when_made_then_equal_to_the_loop_plan_at_lower_priority(
    planner: PlanningPool,
) -> None:
    plan = await planner.plan(PlanJob(chat(), "m", 4096, LIMITS), "acme")
    assert plan == build_chat_plan(chat(), ModelView(CharRenderer(), 4096), LIMITS)
    assert planner.counts == {"pooled": 1}
    pid = worker_pid(planner)
    assert pid is not None and pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 7


async def test_process_plan_when_the_request_is_invalid_then_the_same_typed_400(
    planner: PlanningPool,
) -> None:
    body = chat(response_format={"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": 12}}})
    with pytest.raises(InvalidRequestError) as refused:
        await planner.plan(PlanJob(body, "m", 4096, LIMITS), "acme")
    assert refused.value.param == "response_format.json_schema.schema"
    assert refused.value.status_code == 400


async def test_process_job_when_over_its_cpu_time_then_400_naming_it_and_worker_lives(
    planner: PlanningPool,
) -> None:
    await planner.plan(PlanJob(chat(), "m", 4096, LIMITS), "acme")
    pid = worker_pid(planner)
    with pytest.raises(InvalidRequestError) as refused:
        await planner.plan(PlanJob(chat(), "spin", 4096, LIMITS), "acme")
    error = refused.value
    assert (error.code, error.param) == ("request_too_costly", "messages")
    assert "0.5 CPU seconds while preparing messages" in error.message
    await planner.plan(PlanJob(chat(), "m", 4096, LIMITS), "acme")
    assert worker_pid(planner) == pid and planner.slots.in_use == 0


async def test_process_job_when_it_stops_answering_then_killed_and_a_new_worker_plans(
    planner: PlanningPool,
) -> None:
    await planner.plan(PlanJob(chat(), "m", 4096, LIMITS), "acme")
    pid = worker_pid(planner)
    with pytest.raises(InvalidRequestError) as refused:  # 10 x 0.5 s of wall time
        await planner.plan(PlanJob(chat(), "sleep", 4096, LIMITS), "acme")
    assert refused.value.code == "request_too_costly"
    assert worker_pid(planner) is None  # killed
    await planner.plan(PlanJob(chat(), "m", 4096, LIMITS), "acme")
    assert worker_pid(planner) not in (None, pid)
