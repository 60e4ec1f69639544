"""One stock vLLM replica over HTTP (``vllm serve``): the ``Engine`` protocol on vLLM's own API.

``generate`` streams ``POST /inference/v1/generate`` (engine/vllm_http.py) back as
``EngineOutput``s; ``abort`` asks the replica to stop the request, which then streams its
final chunk (the tokens made before the abort are billed). A stream that does not end within
``ABORT_GRACE_S`` of an abort is closed, which vLLM also treats as an abort.
``probe`` reads ``/health`` and ``/metrics`` (load and counters). Every request carries the
replica's API key (``Authorization: Bearer``). Any transport failure is an
``EngineUnavailableError``: the router may retry it elsewhere when nothing was streamed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from engine.errors import EngineUnavailableError
from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
    LoraTarget,
)
from engine.replica_adapters import ReplicaAdapters
from engine.replica_metrics import stats_from_metrics
from engine.vllm_http import (
    ABORT_PATH,
    EMBED_PATH,
    GENERATE_PATH,
    StreamDecoder,
    abort_body,
    embed_body,
    embedding_from_body,
    generate_body,
    status_error,
)

log = logging.getLogger("llm_gateway.engine.remote")
PROBE_TIMEOUT_S = 5.0
ABORT_GRACE_S = 5.0
LOAD_TIMEOUT_S = 120.0  # loading an adapter reads its weights on the replica
KEEPALIVE_S = 2.0  # below the replica's own keep-alive timeout
# A pooled connection the replica closed as it was picked fails before any answer: sent again
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
STREAM_END_S = 1.0  # after [DONE], how long the rest of a stream may take to arrive


class AdapterMissingError(Exception):
    """The replica answered 404 for the adapter a generation named: it no longer holds it."""


def default_client() -> httpx.AsyncClient:
    # No read timeout: a stream may be quiet while the replica queues it (the gateway's
    # stall timeout bounds that); connecting must be quick so a dead replica fails fast.
    timeout = httpx.Timeout(connect=3.0, read=None, write=30.0, pool=30.0)
    # Idle connections are dropped before vLLM's server drops them (uvicorn's keep-alive,
    # VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s): one it closes as we pick it is a failed request.
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=64,
                          keepalive_expiry=KEEPALIVE_S)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


@dataclass(frozen=True)
class ReplicaAccess:
    """How to talk to a model's replicas: the API key they require, whether they schedule
    by priority (``--scheduling-policy priority``; otherwise priorities are not sent), how
    many LoRA adapters each holds at once (``--max-loras``; 0: none)."""

    api_key: str | None = None
    priority_scheduling: bool = False
    max_loras: int = 0

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("a replica API key must not be blank")
        if self.max_loras < 0:
            raise ValueError("max_loras must be >= 0")

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class _Open:
    """A generation in flight on this replica; ``deadline`` (loop time) once aborted."""

    deadline: float | None = None

    @property
    def aborted(self) -> bool:
        return self.deadline is not None


class RemoteEngine:
    """A replica at ``base_url``; ``probe`` refreshes its readiness, load and counters."""

    def __init__(self, base_url: str, model_name: str, max_model_len: int,
                 client: httpx.AsyncClient, access: ReplicaAccess | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._model_name = model_name
        self._max_model_len = max_model_len
        self._client = client
        self._access = access or ReplicaAccess()
        self._stats = EngineStats(0, 0, 0.0, 0, 0, 0)
        self._ready = False
        self._open: dict[str, _Open] = {}
        self.outstanding = 0  # requests open on this replica, from this gateway
        self.outstanding_at_probe = 0
        self.last_error: str | None = None
        self.errors_total = 0
        self.adapters = ReplicaAdapters(self._access.max_loras, self._post, self.base_url)

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def start(self) -> None:
        await self.probe()

    async def stop(self) -> None:
        self._ready = False

    async def is_ready(self) -> bool:
        return self._ready

    def stats(self) -> EngineStats:
        return self._stats

    @property
    def load(self) -> int:
        """Requests on the replica now: this gateway's own, plus what others sent (as of the
        last probe: what the replica ran and queued beyond this gateway's share then)."""
        others = self._stats.running + self._stats.waiting - self.outstanding_at_probe
        return self.outstanding + max(0, others)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self._client.post(f"{self.base_url}{path}", json=body,
                                       headers=self._access.headers(), timeout=LOAD_TIMEOUT_S)

    async def probe(self) -> bool:
        """``/health`` then ``/metrics``: readiness, load and the replica's counters. A replica
        that comes back has restarted, as far as this gateway knows: it holds no adapters."""
        outstanding = self.outstanding
        try:
            health = await self._client.get(f"{self.base_url}/health", timeout=PROBE_TIMEOUT_S)
            metrics = await self._client.get(f"{self.base_url}/metrics",
                                             timeout=PROBE_TIMEOUT_S)
            stats = stats_from_metrics(metrics.text) if metrics.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(f"probe: {exc!r}")
        if health.status_code != 200:
            return self._failed(f"/health answered {health.status_code}")
        if stats is not None:
            self._stats, self.outstanding_at_probe = stats, outstanding
        if not self._ready:
            self.adapters.forget_all()
        self._ready = True
        return True

    def _failed(self, reason: str) -> bool:
        self._ready, self.last_error = False, reason
        return False

    def mark_failed(self, reason: str) -> None:
        self.errors_total += 1
        self._failed(reason)

    async def abort(self, request_id: str) -> None:
        running = self._open.get(request_id)
        if running is None or running.aborted:
            return
        running.deadline = asyncio.get_running_loop().time() + ABORT_GRACE_S
        with contextlib.suppress(httpx.HTTPError):  # a dead replica took its requests along
            await self._client.post(f"{self.base_url}{ABORT_PATH}", json=abort_body(request_id),
                                    headers=self._access.headers(), timeout=PROBE_TIMEOUT_S)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        self.outstanding += 1
        try:
            response = await self._client.post(
                f"{self.base_url}{EMBED_PATH}", headers=self._access.headers(),
                json=embed_body(request, priority=self._access.priority_scheduling))
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(f"replica {self.base_url}: {exc!r}") from exc
        finally:
            self.outstanding -= 1
        if response.status_code != 200:
            raise status_error(response.status_code, response.text, self.base_url)
        return embedding_from_body(request, response.json())

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineOutput, None]:
        self.outstanding += 1
        running = self._open.setdefault(request.request_id, _Open())
        try:
            if request.lora is None:
                async for out in self._generate(request, running):
                    yield out
            else:
                async for out in self._generate_on_adapter(request, request.lora, running):
                    yield out
        finally:
            self.outstanding -= 1
            self._open.pop(request.request_id, None)

    async def _generate_on_adapter(self, request: GenerationRequest, lora: LoraTarget,
                                   running: _Open) -> AsyncIterator[EngineOutput]:
        """Load the adapter on a miss; if the replica lost it since (it restarted between
        probes), it answers 404 before anything streamed: load it again, once."""
        for attempt in (1, 2):
            await self.adapters.acquire(lora)
            try:
                async for out in self._generate(request, running):
                    yield out
                return
            except AdapterMissingError:
                self.adapters.forget(lora.name)
                if attempt == 2:
                    raise EngineUnavailableError(
                        f"replica {self.base_url} lost adapter {lora.name!r} twice") from None
            finally:
                self.adapters.release(lora.name)

    async def _generate(self, request: GenerationRequest,
                        running: _Open) -> AsyncIterator[EngineOutput]:
        decoder = StreamDecoder(request, self.base_url)
        body = generate_body(request, priority=self._access.priority_scheduling)
        try:
            response = await self._send(body)
            try:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 404 and request.lora is not None:
                        raise AdapterMissingError(response.text[:300])
                    raise status_error(response.status_code, response.text, self.base_url)
                async for data in _payloads(response, running):
                    if (out := decoder.feed(data)) is not None:
                        yield out
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            if not running.aborted:  # a stream closed after an abort ended as asked
                raise EngineUnavailableError(f"replica {self.base_url}: {exc!r}") from exc
        yield decoder.finish(aborted=running.aborted)


    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        """The generation's streamed response. A connection from the pool that the replica
        closed meanwhile fails before any answer (nothing ran there): sent again, once; a
        fresh connection that fails is the replica's failure."""
        request = self._client.build_request("POST", f"{self.base_url}{GENERATE_PATH}",
                                             json=body, headers=self._access.headers())
        try:
            return await self._client.send(request, stream=True)
        except STALE_CONNECTION as exc:
            log.info("replica %s closed a pooled connection (%r); sending again",
                     self.base_url, exc)
            return await self._client.send(request, stream=True)


async def _payloads(response: httpx.Response, running: _Open) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of the replica's event stream, up to ``[DONE]``, or until the
    deadline of an abort the replica ignores. One generator over the raw bytes (no text
    decoding, no line iterator of its own): this loop runs once per streamed token."""
    raw, pending, ended = response.aiter_bytes(), b"", False
    while not ended:
        try:
            if running.deadline is None:
                chunk = await anext(raw)
            else:
                remaining = running.deadline - asyncio.get_running_loop().time()
                chunk = await asyncio.wait_for(anext(raw), max(0.0, remaining))
        except TimeoutError:
            return
        except StopAsyncIteration:
            ended, chunk = True, b"\n"  # an unterminated last line still counts
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    await _read_to_end(raw)
                    return
                yield data


async def _read_to_end(raw: AsyncIterator[bytes]) -> None:
    """The stream's last bytes (its end follows ``[DONE]`` at once): a response read to its
    end hands its connection back to the pool; closed half-read, the connection is dropped
    and the next request pays a new TCP (TLS in production) handshake. A replica that holds
    the stream open past ``STREAM_END_S`` loses the connection instead."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(STREAM_END_S):
            async for _ in raw:
                pass
