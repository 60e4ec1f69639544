"""A replica gate served on loopback for the tests, and a stand-in vLLM that records every
request reaching it (so a test can show that a refused request reached nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.launcher import GateBind
from engine.replica_gate import GatePolicy, ReplicaGate, upstream_client
from engine.replica_server import gate_server
from tests.conftest import free_port

KEY = "gate-key-0123456789"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Answers every path; ``/inference/v1/generate`` streams ``first``, waits for ``go``,
    then streams ``last`` (``closed`` is set once its stream ended, finished or not)."""

    seen: list[Seen] = field(default_factory=list)
    first: bytes = b"data: first\n\n"
    last: bytes = b"data: last\n\ndata: [DONE]\n\n"
    go: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    fail_mid_stream: bool = False

    async def _stream(self) -> AsyncIterator[bytes]:
        try:
            yield self.first
            await self.go.wait()
            if self.fail_mid_stream:
                raise RuntimeError("the engine died")
            yield self.last
        finally:
            self.closed.set()

    async def handle(self, request: Request) -> Response:
        self.seen.append(Seen(request.method, request.url.path, request.url.query,
                              dict(request.headers), await request.body()))
        if request.url.path == "/inference/v1/generate":
            return StreamingResponse(self._stream(), media_type="text/event-stream",
                                     headers={"x-upstream": "yes"})
        return PlainTextResponse(f"{request.method} {request.url.path}")


@asynccontextmanager
async def serving(app: Any, port: int | None = None) -> AsyncIterator[tuple[str, int]]:
    """``app`` on loopback with uvicorn: (its URL, its port)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await started(server)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        await task


async def started(server: uvicorn.Server) -> None:
    for _ in range(1000):  # uvicorn offers a flag, not an event
        if server.started:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("server did not start")


def recorder_app(recorder: Recorder) -> Starlette:
    return Starlette(routes=[Route("/{path:path}", recorder.handle, methods=METHODS)])


@asynccontextmanager
async def gate(policy: GatePolicy, engine_port: int) -> AsyncIterator[str]:
    """The production gate (engine/replica_server.gate_server) in front of loopback's
    ``engine_port``; yields its URL."""
    bind = GateBind("127.0.0.1", free_port(), engine_port, policy)
    async with upstream_client() as client:
        server = gate_server(bind, ReplicaGate(policy, bind.upstream, client))
        task = asyncio.create_task(server.serve())
        await started(server)
        try:
            yield f"http://127.0.0.1:{bind.port}"
        finally:
            server.should_exit = True
            await task


@asynccontextmanager
async def gated(recorder: Recorder) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A generating replica's gate (key ``KEY``) in front of ``recorder``: (URL, a client)."""
    async with serving(recorder_app(recorder)) as (_, port), gate(
            GatePolicy("generate", KEY), port) as url, httpx.AsyncClient() as client:
        yield url, client


async def raw_request(url: str, head: str, body: bytes = b"") -> int:
    """One hand-written HTTP/1.1 request (paths exactly as given, unlike httpx's):
    the status the server answers."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()
