"""``/v1/responses``: create (streamed or not), retrieve, delete; scoped to the tenant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.http.answer import answer
from gateway.http.openai_routes import online_call
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.openai.response_bodies import ResponsesRequest
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/v1")


@router.post("/responses", response_model=None)
async def create_response(
    body: ResponsesRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    exchange = await state.responses.create(
        body, principal, lambda chat: online_call(chat, principal, request))
    return await answer(exchange, request, state.settings.limits)


@router.get("/responses/{response_id}")
async def get_response(
    response_id: str,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    return (await state.responses.find(response_id, principal)).body


@router.delete("/responses/{response_id}")
async def delete_response(
    response_id: str,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    await state.responses.delete(response_id, principal)
    return {"id": response_id, "object": "response", "deleted": True}
