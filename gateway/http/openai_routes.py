"""``/v1`` routes: models, chat completions, text completions. Each generating route hands
its validated body to the serving pipeline and answers with what it returns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.errors import error_envelope
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.serving.accounting import Principal
from gateway.serving.pipeline import Body, Call

router = APIRouter(prefix="/v1")
PING_S = 15  # SSE comment pings keep idle streams open through proxies


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
    call = Call(body, principal, request.state.request_id,
                cache_control=request.headers.get("cache-control"))
    exchange = await state.pipeline.serve(call)
    if exchange.stream:
        return EventSourceResponse(exchange.events(), sep="\n", ping=PING_S,
                                   headers=exchange.headers)
    done = await exchange.complete(request.is_disconnected,
                                   state.settings.limits.request_timeout_s)
    if done is None:  # nobody reads this: the client closed the request (nginx's 499)
        return JSONResponse(error_envelope("client closed the request",
                                           "invalid_request_error"), status_code=499)
    return JSONResponse(done.body, headers={**exchange.headers, **done.cost_headers})
