"""JSON request bodies are checked on their bytes before any route parses them.

One ASGI middleware for every route that takes JSON (chat, completions, responses,
embeddings, batches, admin): a body nested deeper than ``limits.max_json_depth`` or holding
``NaN``/``Infinity`` literals (``gateway/openai/json_bounds.py``) is a 400 naming the
top-level field, before FastAPI's ``json.loads`` could recurse through it. The body is read
when the route reads it (an unauthenticated request is refused without it), checked, and
handed on whole; a refusal travels as ``BodyRefusedError``, which FastAPI passes through
from body reading to the error handlers. Large bodies are checked in a thread.
"""

from __future__ import annotations

import asyncio
import email.message

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import BodyRefusedError, InvalidRequestError
from gateway.openai.json_bounds import Breach, breach

# Bodies up to this size are checked on the event loop (well under a millisecond).
INLINE_BYTES = 65_536
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def is_json(scope: Scope) -> bool:
    """A body FastAPI would parse as JSON (or none declared: checked all the same)."""
    if scope.get("method") not in _WITH_BODY:
        return False
    declared = dict(scope.get("headers", [])).get(b"content-type")
    if declared is None:
        return True
    message = email.message.Message()
    message["content-type"] = declared.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


class JsonBoundsMiddleware:
    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        await self.app(scope, _checked(receive, self.max_depth), send)


def _checked(receive: Receive, max_depth: int) -> Receive:
    """``receive`` whose first call returns the whole body once it is checked."""
    read = False

    async def checked() -> Message:
        nonlocal read
        if read:
            return await receive()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: the app sees it
                read = True
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        read = True
        body = b"".join(chunks)
        if (found := await _breach(body, max_depth)) is not None:
            where = f" (in '{found.param}')" if found.param else ""
            raise BodyRefusedError(InvalidRequestError(
                f"The request body is refused: {found.message}{where}.", param=found.param))
        return {"type": "http.request", "body": body, "more_body": False}

    return checked


async def _breach(body: bytes, max_depth: int) -> Breach | None:
    if len(body) <= INLINE_BYTES:
        return breach(body, max_depth)
    return await asyncio.to_thread(breach, body, max_depth)
