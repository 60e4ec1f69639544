"""ASGI middleware: a request id on every response, a request body size limit, and the
cap on work in flight."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import RequestTooLargeError
from gateway.limits.in_flight import InFlight, InFlightHold, over_capacity
from gateway.observability.logging import REQUEST_ID

REQUEST_ID_HEADER = b"x-request-id"


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives each HTTP request an id (``scope["state"]["request_id"]``) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        REQUEST_ID.set(request_id)  # JSON log lines of this request carry its id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with a 413 before they are parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}  # e.g. file uploads get their own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            # A chunked body without a length: count as it arrives. FastAPI re-raises
            # HTTPException from body reading, and the error handlers map it to a 413.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, detail=self._message(limit))
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def _message(limit: int) -> str:
        return f"request body exceeds {limit} bytes"

    async def _reject(self, send: Send, limit: int) -> None:
        error = RequestTooLargeError(self._message(limit))
        body = json.dumps(error.envelope()).encode()
        headers: list[Any] = [(b"content-type", b"application/json"),
                              (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def in_flight_of(request: Request) -> InFlightHold | None:
    """The request's hold on the in-flight cap (the pipeline widens it to its sequences)."""
    hold = request.scope.get("state", {}).get("in_flight")
    return hold if isinstance(hold, InFlightHold) else None


class InFlightLimitMiddleware:
    """Requests to ``prefix`` hold slots of ``gauge`` (``limits.max_in_flight``) until they
    end (a stream counts until its last event): one each from here, as many as their engine
    sequences once planned (``InFlightHold.widen``). At the cap a request is refused at
    once with a 503 and ``Retry-After``, never queued."""

    def __init__(self, app: ASGIApp, gauge: InFlight, prefix: str = "/v1/") -> None:
        self.app, self.gauge, self.prefix = app, gauge, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        hold = self.gauge.take()
        if hold is None:
            error = over_capacity()
            body = json.dumps(error.envelope()).encode()
            headers = [(b"content-type", b"application/json"),
                       *((k.encode(), v.encode()) for k, v in error.headers().items())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["in_flight"] = hold
        try:
            await self.app(scope, receive, send)
        finally:
            hold.release()
