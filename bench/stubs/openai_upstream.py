"""An OpenAI-compatible upstream at a configured token rate: the gateway's relay path.

``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed or not, in OpenAI's
shapes: a stream opens with the assistant role, brings one token per chunk for each of the
``n`` choices, closes each choice with an empty delta and ``finish_reason: length``, then, with
``stream_options.include_usage``, the usage chunk (every chunk carries ``"usage": null`` then,
as OpenAI's do), then ``[DONE]``. Every answer has ``max_tokens`` (or
``max_completion_tokens``, default 16) tokens per choice. Usage: completion tokens are the
tokens sent; prompt tokens are the whitespace-separated words of the messages' text (or the
prompt), a count a test can recompute (``prompt_tokens``). ``GET /v1/models`` lists ``stub``.
With ``--api-key`` every ``/v1`` path needs it. ``python -m bench.stubs.openai_upstream --port
P --rate 50`` serves until a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from bench.stubs.pacing import (
    RATE_PATH,
    Rate,
    Receive,
    Scope,
    Send,
    answer,
    arguments,
    bearer,
    end_stream,
    event,
    rate_of,
    read_json,
    serve,
    start_stream,
    token,
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # compact, as OpenAI's API writes


CHAT, COMPLETIONS, MODELS = "/v1/chat/completions", "/v1/completions", "/v1/models"


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return _words(value.get("content")) + _words(value.get("text"))
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    """What the stub reports as the prompt's tokens: the words of its text."""
    return _words(body.get("messages")) + _words(body.get("prompt"))


def max_tokens(body: dict[str, Any]) -> int:
    return int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)


@dataclass(frozen=True)
class _Answer:
    """One request's fixed parts: its kind, id, model, choices and tokens per choice."""

    chat: bool
    id: str
    model: str
    n: int
    tokens: int
    prompt: int

    @classmethod
    def of(cls, chat: bool, body: dict[str, Any], serial: int) -> _Answer:
        return cls(chat, f"{'chatcmpl' if chat else 'cmpl'}-stub{serial}", str(body["model"]),
                   int(body.get("n") or 1), max_tokens(body), prompt_tokens(body))

    def usage(self) -> dict[str, Any]:
        completion = self.n * self.tokens
        return {"prompt_tokens": self.prompt, "completion_tokens": completion,
                "total_tokens": self.prompt + completion}

    def head(self, streamed: bool) -> dict[str, Any]:
        kind = ("chat.completion" if self.chat else "text_completion") + (
            ".chunk" if streamed and self.chat else "")
        return {"id": self.id, "object": kind, "created": int(time.time()),
                "model": self.model, "system_fingerprint": None}

    def choice(self, index: int, text: str | None, finish: str | None,
               role: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": text or "", "logprobs": None,
                    "finish_reason": finish}
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
            {} if text is None else {"content": text})
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def whole(self) -> dict[str, Any]:
        text = "".join(token(k)[1] for k in range(self.tokens))
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": text,
                                                "refusal": None}, "logprobs": None,
                        "finish_reason": "length"} for i in range(self.n)]
        else:
            choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": "length"}
                       for i in range(self.n)]
        return {**self.head(False), "choices": choices, "usage": self.usage()}


class Upstream:
    """The stub's state: its rate, key and a request counter."""

    def __init__(self, rate: Rate, api_key: str | None = None) -> None:
        self.rate, self.api_key, self.requests = rate, api_key, 0


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _stream(upstream: Upstream, one: _Answer, usage: bool, receive: Receive,
                  send: Send) -> None:
    head = one.head(True) | ({"usage": None} if usage else {})
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(receive, gone))
    start = asyncio.get_running_loop().time()
    try:
        await start_stream(send)
        if one.chat:
            await event(send, _json(
                head | {"choices": [one.choice(i, None, None, True) for i in range(one.n)]}))
        for k in range(one.tokens):
            await upstream.rate.wait(start, k)
            if gone.is_set():
                return
            text = token(k)[1]
            last = not one.chat and k == one.tokens - 1
            for index in range(one.n):
                choice = one.choice(index, text, "length" if last else None)
                await event(send, _json(head | {"choices": [choice]}))
        if one.chat:
            for index in range(one.n):
                await event(send, _json(
                    head | {"choices": [one.choice(index, None, "length")]}))
        if usage:
            await event(send, _json(head | {"choices": [], "usage": one.usage()}))
        await end_stream(send)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _complete(upstream: Upstream, one: _Answer, send: Send) -> None:
    start = asyncio.get_running_loop().time()
    await upstream.rate.wait(start, max(0, one.tokens - 1))  # the last token's time
    await answer(send, 200, _json(one.whole()).encode())


def app_for(upstream: Upstream) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if upstream.api_key and path.startswith("/v1") and bearer(scope) != upstream.api_key:
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error",
                     "param": None, "code": "invalid_api_key"}
            await answer(send, 401, _json({"error": error}).encode())
        elif path in (CHAT, COMPLETIONS) and scope["method"] == "POST":
            body = await read_json(receive)
            upstream.requests += 1
            one = _Answer.of(path == CHAT, body, upstream.requests)
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                await _stream(upstream, one, usage, receive, send)
            else:
                await _complete(upstream, one, send)
        elif path == MODELS:
            models = {"object": "list", "data": [
                {"id": "stub", "object": "model", "created": 0, "owned_by": "stub"}]}
            await answer(send, 200, _json(models).encode())
        elif path == RATE_PATH and scope["method"] == "POST":
            upstream.rate = rate_of(await read_json(receive))
            await answer(send, 200, b"{}")
        elif path == "/health":
            await answer(send, 200, b"")
        else:
            await answer(send, 404, b'{"error":{"message":"not found"}}')

    return app


def main() -> None:
    args = arguments("An OpenAI-compatible upstream stand-in at a token rate.").parse_args()
    serve(app_for(Upstream(Rate(args.rate, args.ttft_ms / 1000), args.api_key)),
          args.host, args.port)


if __name__ == "__main__":
    main()
