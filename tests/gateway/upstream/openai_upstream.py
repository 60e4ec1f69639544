"""A small OpenAI-compatible upstream on loopback, for the relay tests.

It answers /v1/chat/completions and /v1/completions with deterministic words, one per
token, and reports usage numbers of its own (deliberately unlike tiktoken's estimates) so
the tests can tell which count was billed. ``Behaviour`` switches usage off, fails with a
status, or slows the stream; ``seen`` records every body and key that arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.gateway.metered import on_loopback

UPSTREAM_KEY = "upstream-secret"
WORDS = ("alpha", " beta", " gamma", " delta", " epsilon", " zeta", " eta", " theta")
PROMPT_TOKENS = 1000  # what this upstream says every prompt cost
CACHED_TOKENS = 400


@dataclass
class Behaviour:
    send_usage: bool = True
    fail_status: int | None = None
    fail_times: int | None = None  # fail only the first this many requests (None: all)
    token_delay_s: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    peers: set[tuple[str, int]] = field(default_factory=set)  # the client ends of connections


def words(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(count)]


def _usage(completion: int) -> dict[str, Any]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}}


def _choice(kind: str, index: int, text: str, finish: str | None, streamed: bool) -> dict[str, Any]:
    if kind == "completion":
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
    key = "delta" if streamed else "message"
    return {"index": index, key: {"role": "assistant", "content": text}, "finish_reason": finish}


async def _stream(kind: str, body: dict[str, Any], count: int,
                  behaviour: Behaviour) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    base = {"id": "up-1", "object": obj, "created": 1, "model": body["model"]}
    n = body.get("n", 1)
    try:
        for i, word in enumerate(words(count)):
            await asyncio.sleep(behaviour.token_delay_s)
            finish = "length" if i == count - 1 else None
            for index in range(n):
                chunk = {**base, "choices": [_choice(kind, index, word, finish, True)]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
        if behaviour.send_usage and body.get("stream_options", {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": _usage(count * n)}
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    except asyncio.CancelledError:
        behaviour.disconnected.set()
        raise


def upstream_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    async def answer(kind: str, request: Request) -> Response:
        body = await request.json()
        behaviour.seen.append({"kind": kind, "body": body,
                               "authorization": request.headers.get("authorization")})
        if request.client is not None:
            behaviour.peers.add((request.client.host, request.client.port))
        if request.headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, 401)
        failing = behaviour.fail_times is None or len(behaviour.seen) <= behaviour.fail_times
        if behaviour.fail_status is not None and failing:
            error = {"message": f"upstream says no ({behaviour.fail_status})",
                     "type": "invalid_request_error", "param": "messages", "code": "nope"}
            return JSONResponse({"error": error}, behaviour.fail_status,
                                headers={"retry-after": "7"})
        count = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        if body.get("stream"):
            return StreamingResponse(_stream(kind, body, count, behaviour),
                                     media_type="text/event-stream")
        text = "".join(words(count))
        n = body.get("n", 1)
        payload: dict[str, Any] = {
            "id": "up-1", "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": 1, "model": body["model"],
            "choices": [_choice(kind, i, text, "length", False) for i in range(n)]}
        if behaviour.send_usage:
            payload["usage"] = _usage(count * n)
        return JSONResponse(payload)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await answer("chat", request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer("completion", request)

    return app


@contextlib.asynccontextmanager
async def running_upstream(behaviour: Behaviour) -> AsyncIterator[str]:
    """The upstream on a real loopback socket; yields its base URL (``.../v1``)."""
    async with on_loopback(upstream_app(behaviour)) as base_url:
        yield base_url + "/v1"
