"""An exchange from the pipeline as the HTTP answer: an SSE stream or one JSON body."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.errors import error_envelope
from gateway.serving.exchange import Exchange
from gateway.settings import LimitSettings
from gateway.streaming.response import StreamResponse

PING_S = 15  # SSE comment pings keep idle streams open through proxies


async def answer(exchange: Exchange, request: Request,
                 limits: LimitSettings) -> JSONResponse | EventSourceResponse:
    """A client that stops reading a stream is cut off after ``send_timeout_s`` (its request
    aborted and settled); a collected answer is bounded by ``request_timeout_s``."""
    if exchange.stream:
        return StreamResponse(exchange.events(), sep="\n", ping=PING_S,
                              headers=exchange.headers, send_timeout=limits.send_timeout_s)
    done = await exchange.complete(request.is_disconnected, limits.request_timeout_s)
    if done is None:  # nobody reads this: the client closed the request (nginx's 499)
        return JSONResponse(error_envelope("client closed the request",
                                           "invalid_request_error"), status_code=499)
    return JSONResponse(done.body, headers={**exchange.headers, **done.cost_headers})
