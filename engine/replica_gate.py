"""The replica gate: the one door of a vLLM replica, in front of its loopback-only server.

vLLM's ``--api-key`` guards only paths under ``/v1``, ``/v2``, ``/inference`` and ``/cohere``;
the same server answers ``/invocations`` (SageMaker's route: full chat and completions),
``/tokenize``, ``/pooling``, ``/scale_elastic_ep`` and more without it. So a replica's vLLM
listens on 127.0.0.1 only, and this gate, bound to the replica's public port, lets through
exactly what the gateway uses (engine/remote.py), nothing else:

- with the key (``Authorization: Bearer``, compared in constant time): ``POST
  /inference/v1/generate`` and ``POST /inference/v1/abort_requests`` for a generating model,
  ``POST /v1/embeddings`` for a pooling one;
- open, for probes and Prometheus: ``GET /health`` and ``GET /metrics`` (neither spends a token);
- anything else: 404, with or without the key; a missing or wrong key on a keyed path: 401.

A request is matched on its decoded path exactly (no prefix, no normalisation) and forwarded
to that canonical path without its query string, with the client's headers less the
hop-by-hop ones; the key is passed on, so vLLM (still started with it) checks it too. The
answer streams back chunk by chunk as vLLM writes it, never buffered; a client that goes away
closes the upstream stream, which vLLM treats as an abort. vLLM unreachable: 503 (on
``/health`` too, so probes see a replica without an engine as not ready).

It imports neither vLLM nor torch: it runs in the gateway's slim image as the engine pod's
sidecar (the Helm chart) and inside ``llm-gateway engine serve`` (engine/replica_server.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import get_args

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from engine.config import Task
from engine.replica_adapters import LOAD_PATH, UNLOAD_PATH
from engine.vllm_http import ABORT_PATH, EMBED_PATH, GENERATE_PATH

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
Route = tuple[str, str]  # (method, path)
OPEN_ROUTES: frozenset[Route] = frozenset({("GET", HEALTH_PATH), ("GET", METRICS_PATH)})
KEYED_ROUTES: dict[Task, frozenset[Route]] = {
    "generate": frozenset({("POST", GENERATE_PATH), ("POST", ABORT_PATH),
                           ("POST", LOAD_PATH), ("POST", UNLOAD_PATH)}),
    "embed": frozenset({("POST", EMBED_PATH)}),
}
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"te",
                         b"proxy-authorization", b"trailer", b"transfer-encoding", b"upgrade"})
# Request headers httpx sets itself (the body is re-sent whole) or cannot honour.
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}


class Verdict(Enum):
    FORWARD = 200
    UNAUTHORIZED = 401
    NOT_FOUND = 404


@dataclass(frozen=True)
class GatePolicy:
    """What a replica serving ``task`` lets through; ``api_key`` None: keyed routes are open
    (only for a replica on loopback: engine/launcher.py refuses anything else)."""

    task: Task
    api_key: str | None = field(default=None, repr=False)
    _digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.task not in get_args(Task):
            raise ValueError(f"task must be one of {get_args(Task)}, not {self.task!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("a replica API key must not be blank")
        digest = hashlib.sha256(self.api_key.encode()).digest() if self.api_key else b""
        object.__setattr__(self, "_digest", digest)

    @property
    def keyed_routes(self) -> frozenset[Route]:
        return KEYED_ROUTES[self.task]

    def verdict(self, method: str, path: str, authorization: bytes | None) -> Verdict:
        route = (method, path)
        if route in OPEN_ROUTES:
            return Verdict.FORWARD
        if route not in self.keyed_routes:
            return Verdict.NOT_FOUND
        return Verdict.FORWARD if self.authorized(authorization) else Verdict.UNAUTHORIZED

    def authorized(self, authorization: bytes | None) -> bool:
        """``Bearer <key>`` (the scheme in any case, as vLLM reads it); the token is hashed and
        compared in constant time whatever its length or scheme."""
        if self.api_key is None:
            return True
        scheme, _, token = (authorization or b"").partition(b" ")
        matches = hmac.compare_digest(hashlib.sha256(token).digest(), self._digest)
        return matches and scheme.lower() == b"bearer"


def _refusal(status: int, message: str, kind: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": status}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return headers, body


_REFUSALS = {
    401: _refusal(401, "this replica requires its API key", "authentication_error"),
    404: _refusal(404, "not found", "not_found_error"),
    503: _refusal(503, "this replica's engine is not reachable", "service_unavailable"),
}


async def _refuse(send: Send, status: int) -> None:
    headers, body = _REFUSALS[status]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The request's whole body, or None when the client went away first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def upstream_client() -> httpx.AsyncClient:
    """The gate's connections to its vLLM: no read timeout (a queued stream is quiet), idle
    ones dropped before vLLM's own 5 s keep-alive ends them, no proxy from the environment."""
    timeout = httpx.Timeout(connect=3.0, read=None, write=30.0, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256,
                          keepalive_expiry=4.0)
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


class ReplicaGate:
    """The ASGI app: ``policy`` decides, ``upstream`` (``http://127.0.0.1:PORT``) serves."""

    def __init__(self, policy: GatePolicy, upstream: str, client: httpx.AsyncClient) -> None:
        self._policy = policy
        self._upstream = upstream.rstrip("/")
        self._client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan, no websockets (engine/replica_server.py)
            return
        method, path = scope["method"], scope["path"]
        verdict = self._policy.verdict(method, path, _header(scope, b"authorization"))
        if verdict is not Verdict.FORWARD:
            await _refuse(send, verdict.value)
            return
        body = await _read_body(receive)
        if body is None:
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
        request = self._client.build_request(method, self._upstream + path, headers=headers,
                                             content=body if method == "POST" else None)
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            await self._relay(request, send)
            group.cancel_scope.cancel()

    async def _relay(self, request: httpx.Request, send: Send) -> None:
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            await _refuse(send, 503)
            return
        try:
            headers = [(k.lower(), v) for k, v in response.headers.raw
                       if k.lower() not in _HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": headers})
            # A replica failing mid-stream raises here: the server then drops the client's
            # connection, so the stream ends broken, never as if complete.
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):  # closing an unfinished stream aborts it
                await response.aclose()
