"""``POST /v1/embeddings``: an embedding model's vectors, through the serving pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.http.answer import answer
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.serving.accounting import Principal
from gateway.serving.attribution import TAGS_HEADER
from gateway.serving.pipeline import Call

router = APIRouter(prefix="/v1")


@router.post("/embeddings", response_model=None)
async def embeddings(
    body: EmbeddingsRequest,
    request: Request,
    state: GatewayState = Depends(gateway_state),
    principal: Principal = Depends(principal_of),
) -> JSONResponse | EventSourceResponse:
    call = Call(body, principal, request.state.request_id,
                tags_header=request.headers.get(TAGS_HEADER))
    exchange = await state.pipeline.serve(call)
    return await answer(exchange, request, state.settings.limits)
