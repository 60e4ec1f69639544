"""One engine replica over HTTP: the ``Engine`` protocol against ``llm-gateway engine serve``.

``generate`` streams the server's SSE events back as ``EngineOutput``s; closing the stream
(client gone, gateway abort) closes the HTTP response, which aborts the request on the
replica. Any transport failure is an ``EngineUnavailableError``: the router may retry it
elsewhere when nothing was streamed yet.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from engine.errors import EngineRequestError, EngineUnavailableError
from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
)
from engine.wire import embedding_from_wire, encode, output_from_wire, stats_from_wire

PROBE_TIMEOUT_S = 5.0


def default_client() -> httpx.AsyncClient:
    # No read timeout: a stream may be quiet while the replica queues it (the gateway's
    # stall timeout bounds that); connecting must be quick so a dead replica fails fast.
    timeout = httpx.Timeout(connect=3.0, read=None, write=30.0, pool=30.0)
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=64)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


class RemoteEngine:
    """A replica at ``base_url``; ``probe`` refreshes its readiness and stats."""

    def __init__(
        self, base_url: str, model_name: str, max_model_len: int, client: httpx.AsyncClient
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._model_name = model_name
        self._max_model_len = max_model_len
        self._client = client
        self._stats = EngineStats(0, 0, 0.0, 0, 0, 0)
        self._ready = False
        self.outstanding = 0  # generate streams open on this replica, from this gateway

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

    async def probe(self) -> bool:
        """Ask ``/ready``; remember readiness and the replica's own counters."""
        try:
            response = await self._client.get(f"{self.base_url}/ready", timeout=PROBE_TIMEOUT_S)
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            self._ready = False
            return False
        if isinstance(body.get("stats"), dict):
            self._stats = stats_from_wire(body["stats"])
        self._ready = response.status_code == 200 and bool(body.get("ready"))
        return self._ready

    def mark_unready(self) -> None:
        self._ready = False

    async def abort(self, request_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # a dead replica took its requests along
            await self._client.post(f"{self.base_url}/v1/abort/{request_id}",
                                    timeout=PROBE_TIMEOUT_S)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        self.outstanding += 1
        try:
            response = await self._client.post(f"{self.base_url}/v1/embed", json=encode(request))
        except httpx.HTTPError as exc:
            self._ready = False
            raise EngineUnavailableError(f"replica {self.base_url}: {exc!r}") from exc
        finally:
            self.outstanding -= 1
        if response.status_code != 200:
            raise _status_error(response)
        return embedding_from_wire(response.json())

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineOutput, None]:
        self.outstanding += 1
        try:
            async for out in self._generate(request):
                yield out
        finally:
            self.outstanding -= 1

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        url = f"{self.base_url}/v1/generate"
        finished = False
        try:
            async with self._client.stream("POST", url, json=encode(request)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response)
                async for event, data in _sse_events(response):
                    if event == "error":
                        raise _in_band_error(data)
                    out = output_from_wire(json.loads(data))
                    finished = out.finished
                    yield out
        except httpx.HTTPError as exc:
            self._ready = False
            raise EngineUnavailableError(f"replica {self.base_url}: {exc!r}") from exc
        if not finished:
            raise EngineUnavailableError(f"replica {self.base_url} ended the stream early")


async def _sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a ``text/event-stream`` (comments and pings skipped)."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data:
        yield event, "\n".join(data)


def _message(body: str) -> tuple[str, str | None]:
    try:
        error = json.loads(body)["error"]
        param = error.get("param")
        return str(error["message"]), param if isinstance(param, str) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:200], None


def _status_error(response: httpx.Response) -> Exception:
    message, param = _message(response.text)
    if response.status_code == 400:
        return EngineRequestError(message, param)
    return EngineUnavailableError(f"replica answered {response.status_code}: {message}")


def _in_band_error(data: str) -> Exception:
    try:
        body = json.loads(data)
    except ValueError:
        body = {"message": data}
    if body.get("type") == "request":
        param = body.get("param")
        return EngineRequestError(str(body.get("message")),
                                  param if isinstance(param, str) else None)
    return EngineUnavailableError(f"replica failed mid-stream: {body.get('message')}")
