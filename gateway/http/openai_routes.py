"""``/v1`` routes: models, chat completions, text completions. Each generating route hands
its validated body to the serving pipeline and answers with what it returns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.auth.key_records import may_use
from gateway.http.answer import answer
from gateway.http.middleware import in_flight_of
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.serving.accounting import Principal
from gateway.serving.attribution import TAGS_HEADER
from gateway.serving.pipeline import Body, Call
from gateway.serving.queueing import PRIORITY_HEADER, requested_priority

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    """The models the caller may use (a key's and its tenant's model lists)."""
    data = [
        {"id": m.name, "object": "model", "created": m.created, "owned_by": "llm-gateway"}
        for m in state.models
    ]
    data += [{"id": u.model.name, "object": "model", "created": 0, "owned_by": "upstream"}
             for u in state.upstreams]
    data += [{"id": a.name, "object": "model", "created": a.created, "owned_by": "llm-gateway",
              "parent": a.base_model}
             for a in state.models.adapters if a.allows(principal)]
    return {"object": "list", "data": [m for m in data if may_use(principal, str(m["id"]))]}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    return await serve(state, body, principal, request)


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    return await serve(state, body, principal, request)


async def serve(state: GatewayState, body: Body, principal: Principal,
                request: Request) -> JSONResponse | EventSourceResponse:
    """Run the pipeline; stream its events or return the whole answer."""
    exchange = await state.pipeline.serve(online_call(body, principal, request))
    return await answer(exchange, request, state.settings.limits)


def online_call(body: Body, principal: Principal, request: Request) -> Call:
    """An online request's call: its headers (cache, priority, tags), its disconnect check
    while queued and its hold on ``limits.max_in_flight``."""
    return Call(body, principal, request.state.request_id,
                cache_control=request.headers.get("cache-control"),
                priority=requested_priority(request.headers.get(PRIORITY_HEADER)),
                disconnected=request.is_disconnected,
                in_flight=in_flight_of(request),
                tags_header=request.headers.get(TAGS_HEADER))
