"""``/v1`` routes: models, chat completions, text completions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from engine.protocol import Engine, GenerationRequest
from gateway.caching.recording import Recorder, ReplayEngine
from gateway.errors import ServiceUnavailableError, error_envelope
from gateway.http.schemas import ChatCompletionRequest, CompletionRequest, SamplingBody
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.serving.accounting import Principal, Ticket
from gateway.serving.openai_format import ResponseFormat
from gateway.serving.planning import GenerationPlan, plan_chat, plan_completion
from gateway.serving.registry import ServedModel
from gateway.serving.run import RequestRun
from gateway.streaming.sse import completion_events
from gateway.upstream.registry import Upstream
from gateway.upstream.relay import UpstreamRelay

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(
    state: GatewayState = Depends(gateway_state),
    _principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    data = [
        {"id": m.name, "object": "model", "created": m.created, "owned_by": "llm-gateway"}
        for m in state.models
    ]
    data += [{"id": u.model.name, "object": "model", "created": 0, "owned_by": "upstream"}
             for u in state.upstreams]
    return {"object": "list", "data": data}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    if (upstream := state.upstreams.find(body.model)) is not None:
        counted = await plan_chat(body, upstream.model.counter, upstream.model.context_window,
                                  state.settings.limits)
        return await _relay(state, upstream, counted, body, principal, request)
    served = state.models.get(body.model)
    plan = await plan_chat(body, served.renderer, served.max_model_len, state.settings.limits)
    return await _respond(state, served, plan, principal, request)


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    if (upstream := state.upstreams.find(body.model)) is not None:
        counted = await plan_completion(body, upstream.model.counter,
                                        upstream.model.context_window, state.settings.limits)
        return await _relay(state, upstream, counted, body, principal, request)
    served = state.models.get(body.model)
    plan = await plan_completion(
        body, served.renderer, served.max_model_len, state.settings.limits
    )
    return await _respond(state, served, plan, principal, request)


async def _respond(
    state: GatewayState,
    served: ServedModel,
    plan: GenerationPlan,
    principal: Principal,
    request: Request,
) -> JSONResponse | EventSourceResponse:
    if state.draining:
        raise ServiceUnavailableError("the gateway is shutting down", retry_after=5)
    request_id: str = request.state.request_id
    engine, ticket, recorder, headers = await _reserve(state, served, plan, principal, request)
    engine_request = GenerationRequest(
        request_id=request_id,
        prompt_token_ids=plan.prompt_token_ids,
        sampling=plan.sampling,
        cache_salt=principal.tenant,
    )
    observer = state.observability.observe(request_id, served.name, principal.tenant)
    run = RequestRun(engine, engine_request, ticket, state.settings.limits.stall_timeout_s,
                     observer, recorder)
    prefix = "chatcmpl-" if plan.kind == "chat" else "cmpl-"
    fmt = ResponseFormat(
        kind=plan.kind,
        request_id=prefix + request_id,
        model=served.name,
        created=int(time.time()),
        want_logprobs=plan.sampling.logprobs is not None,
    )
    try:
        await run.prime()
    except BaseException:
        await run.close()
        raise
    if plan.stream:
        return EventSourceResponse(
            completion_events(run, fmt, plan.include_usage), sep="\n", ping=15, headers=headers
        )
    return await _complete(run, fmt, request, state.settings.limits.request_timeout_s, headers)


async def _reserve(
    state: GatewayState,
    served: ServedModel,
    plan: GenerationPlan,
    principal: Principal,
    request: Request,
) -> tuple[Engine, Ticket, Recorder | None, dict[str, str]]:
    """Open the billing ticket; a response-cache hit swaps the engine for its replay."""
    decision = state.cache.decide(principal, plan, request.headers.get("cache-control"))
    recording = await state.cache.lookup(decision, served.name)
    ticket = await state.accounting.open(principal, plan, request.state.request_id)
    headers = {} if state.cache.store is None else {
        "x-cache": "hit" if recording else "miss" if decision else "bypass"}
    if recording is not None:  # no engine runs
        return (ReplayEngine(served.engine, recording), state.cache.hit_ticket(ticket), None,
                headers)
    if decision is None:
        return served.engine, ticket, None, headers
    recorder = Recorder()
    ticket = state.cache.fill_ticket(ticket, decision, served.name, recorder)
    return served.engine, ticket, recorder, headers


async def _relay(
    state: GatewayState,
    upstream: Upstream,
    plan: GenerationPlan,
    body: SamplingBody,
    principal: Principal,
    request: Request,
) -> JSONResponse | EventSourceResponse:
    """A model served by an external upstream: reserved and settled like our own."""
    if state.draining:
        raise ServiceUnavailableError("the gateway is shutting down", retry_after=5)
    ticket = await state.accounting.open(principal, plan, request.state.request_id)
    relay = UpstreamRelay(upstream.client, upstream.model, plan,
                          body.model_dump(mode="json", exclude_unset=True), ticket)
    if plan.stream:
        await relay.prime()
        return EventSourceResponse(relay.events(plan.include_usage), sep="\n", ping=15)
    payload, extra = await relay.complete()
    headers = {"x-request-cost": str(extra["cost"])} if "cost" in extra else {}
    return JSONResponse(payload, headers=headers)


async def _complete(
    run: RequestRun, fmt: ResponseFormat, request: Request, timeout_s: float,
    headers: dict[str, str],
) -> JSONResponse:
    """Collect a whole completion; a client that hangs up aborts the engine request."""
    collect = asyncio.create_task(_drain(run))
    deadline = time.monotonic() + timeout_s
    try:
        while not collect.done():
            await asyncio.wait({collect}, timeout=0.5)
            if collect.done():
                break
            if await request.is_disconnected():
                return _client_gone()
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"the request took longer than {timeout_s:.0f} s", retry_after=5
                )
        extra = collect.result()
    finally:
        if not collect.done():
            collect.cancel()
        await run.close()
    if "cost" in extra:
        headers = {**headers, "x-request-cost": str(extra["cost"])}
    return JSONResponse(fmt.full(run.tally, extra), headers=headers)


def _client_gone() -> JSONResponse:
    # Nobody reads this: the client closed the connection (nginx's 499 convention).
    return JSONResponse(
        error_envelope("client closed the request", "invalid_request_error"), status_code=499
    )


async def _drain(run: RequestRun) -> dict[str, Any]:
    async for _ in run.outputs():
        pass
    return await run.settle()
