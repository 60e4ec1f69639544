"""What the stubs share: the token schedule of one stream, the ASGI plumbing, the process.

A stream's ``k``-th token is due at ``start + ttft + k / rate`` (an absolute schedule, so a
late wake-up never slows the stream down); ``rate`` 0 sends tokens back to back. The stubs
are bare ASGI apps on uvicorn (httptools, uvloop where installed): their own cost per chunk
is small next to any gateway's, and the same in every arm of a comparison. ``POST
/stub/rate`` changes a running stub's rate (no key: a stub listens on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Token ids and their text, cycled through: what a stub "generates".
WORDS = (" alpha", " beta", " gamma", " delta", " epsilon", " zeta", " eta", " theta")
FIRST_ID = 1000


@dataclass(frozen=True)
class Rate:
    """Tokens per second per stream (0: as fast as the connection takes them), and the time
    to the first token."""

    tokens_per_s: float = 0.0
    ttft_s: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens_per_s < 0 or self.ttft_s < 0:
            raise ValueError("a stub's rate and time to first token must not be negative")

    async def wait(self, start: float, k: int) -> None:
        """Sleep until token ``k`` (from 0) of a stream started at ``start`` is due."""
        due = start + self.ttft_s + (k / self.tokens_per_s if self.tokens_per_s else 0.0)
        delay = due - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


RATE_PATH = "/stub/rate"  # POST {"tokens_per_s": R, "ttft_ms": T}: the rate from now on


def rate_of(body: dict[str, Any]) -> Rate:
    return Rate(float(body.get("tokens_per_s") or 0), float(body.get("ttft_ms") or 0) / 1000)


def token(k: int) -> tuple[int, str]:
    """The ``k``-th generated token: its id and its text."""
    return FIRST_ID + k % len(WORDS), WORDS[k % len(WORDS)]


async def read_json(receive: Receive) -> Any:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return json.loads(body) if body else None


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            text = bytes(value).decode("latin-1")
            return text[7:] if text.startswith("Bearer ") else text
    return None


async def answer(send: Send, status: int, body: bytes,
                 content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def start_stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})


async def event(send: Send, data: str) -> None:
    await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(),
                "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="tokens per second per stream (0: back to back)")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to the first token")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    return parser


def serve(app: Callable[[Scope, Receive, Send], Awaitable[None]], host: str,
          port: int) -> None:
    """Serve until a signal (the bench starts stubs as processes)."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                lifespan="off", ws="none", backlog=4096)
